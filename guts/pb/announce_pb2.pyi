from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Announcement(_message.Message):
    __slots__ = ("refs", "repository")
    REFS_FIELD_NUMBER: _ClassVar[int]
    REPOSITORY_FIELD_NUMBER: _ClassVar[int]
    refs: RefsAnnounced
    repository: RepositoryAnnounced
    def __init__(self, refs: _Optional[_Union[RefsAnnounced, _Mapping]] = ..., repository: _Optional[_Union[RepositoryAnnounced, _Mapping]] = ...) -> None: ...

class RefsAnnounced(_message.Message):
    __slots__ = ("rid", "statement", "sigrefs")
    RID_FIELD_NUMBER: _ClassVar[int]
    STATEMENT_FIELD_NUMBER: _ClassVar[int]
    SIGREFS_FIELD_NUMBER: _ClassVar[int]
    rid: str
    statement: bytes
    sigrefs: str
    def __init__(self, rid: _Optional[str] = ..., statement: _Optional[bytes] = ..., sigrefs: _Optional[str] = ...) -> None: ...

class RepositoryAnnounced(_message.Message):
    __slots__ = ("rid", "identity")
    RID_FIELD_NUMBER: _ClassVar[int]
    IDENTITY_FIELD_NUMBER: _ClassVar[int]
    rid: str
    identity: _containers.RepeatedScalarFieldContainer[bytes]
    def __init__(self, rid: _Optional[str] = ..., identity: _Optional[_Iterable[bytes]] = ...) -> None: ...
