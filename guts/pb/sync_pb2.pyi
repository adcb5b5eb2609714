from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Request(_message.Message):
    __slots__ = ("get_refs", "get_objects")
    GET_REFS_FIELD_NUMBER: _ClassVar[int]
    GET_OBJECTS_FIELD_NUMBER: _ClassVar[int]
    get_refs: GetRefs
    get_objects: GetObjects
    def __init__(self, get_refs: _Optional[_Union[GetRefs, _Mapping]] = ..., get_objects: _Optional[_Union[GetObjects, _Mapping]] = ...) -> None: ...

class GetRefs(_message.Message):
    __slots__ = ("rid",)
    RID_FIELD_NUMBER: _ClassVar[int]
    rid: str
    def __init__(self, rid: _Optional[str] = ...) -> None: ...

class GetObjects(_message.Message):
    __slots__ = ("rid", "request")
    RID_FIELD_NUMBER: _ClassVar[int]
    REQUEST_FIELD_NUMBER: _ClassVar[int]
    rid: str
    request: bytes
    def __init__(self, rid: _Optional[str] = ..., request: _Optional[bytes] = ...) -> None: ...

class Response(_message.Message):
    __slots__ = ("refs", "objects", "refused")
    REFS_FIELD_NUMBER: _ClassVar[int]
    OBJECTS_FIELD_NUMBER: _ClassVar[int]
    REFUSED_FIELD_NUMBER: _ClassVar[int]
    refs: Refs
    objects: Objects
    refused: Refused
    def __init__(self, refs: _Optional[_Union[Refs, _Mapping]] = ..., objects: _Optional[_Union[Objects, _Mapping]] = ..., refused: _Optional[_Union[Refused, _Mapping]] = ...) -> None: ...

class Refs(_message.Message):
    __slots__ = ("identity", "statements", "sigrefs", "proposals")
    IDENTITY_FIELD_NUMBER: _ClassVar[int]
    STATEMENTS_FIELD_NUMBER: _ClassVar[int]
    SIGREFS_FIELD_NUMBER: _ClassVar[int]
    PROPOSALS_FIELD_NUMBER: _ClassVar[int]
    identity: _containers.RepeatedScalarFieldContainer[bytes]
    statements: _containers.RepeatedScalarFieldContainer[bytes]
    sigrefs: _containers.RepeatedScalarFieldContainer[str]
    proposals: _containers.RepeatedScalarFieldContainer[bytes]
    def __init__(self, identity: _Optional[_Iterable[bytes]] = ..., statements: _Optional[_Iterable[bytes]] = ..., sigrefs: _Optional[_Iterable[str]] = ..., proposals: _Optional[_Iterable[bytes]] = ...) -> None: ...

class Objects(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class Refused(_message.Message):
    __slots__ = ("reason", "message")
    class Reason(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        REASON_UNSPECIFIED: _ClassVar[Refused.Reason]
        NOT_FOUND: _ClassVar[Refused.Reason]
        BAD_REQUEST: _ClassVar[Refused.Reason]
        BUSY: _ClassVar[Refused.Reason]
    REASON_UNSPECIFIED: Refused.Reason
    NOT_FOUND: Refused.Reason
    BAD_REQUEST: Refused.Reason
    BUSY: Refused.Reason
    REASON_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    reason: Refused.Reason
    message: str
    def __init__(self, reason: _Optional[_Union[Refused.Reason, str]] = ..., message: _Optional[str] = ...) -> None: ...
