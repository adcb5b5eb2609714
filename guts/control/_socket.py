"""The control socket: a Unix socket in ``GUTS_HOME`` that only the node's
owner can use.

The socket is bound under a temporary name, made mode 0600 and only then
renamed into place, so there is no moment at which another user could
connect to it. A socket file left behind by a node that died is detected
(nobody answers on it) and replaced; one that answers means a node is
already running with this home, and a second one refuses to start.
"""

from __future__ import annotations

import os
import socket
import stat
from pathlib import Path

import trio

from guts.control._common import check_socket_path, connect_failure
from guts.errors import ConfigError

__all__ = ["ControlSocket", "bind_control_socket", "connect_control"]

def _answers(path: Path) -> bool:
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.settimeout(1.0)
    try:
        probe.connect(os.fspath(path))
    except OSError:
        return False
    finally:
        probe.close()
    return True


class ControlSocket:
    """A bound control socket: its listener, and the file it owns.

    Attributes:
        path: where the socket lives.
        listener: accepts connections from the node's owner.
    """

    def __init__(self, path: Path, listener: trio.SocketListener, ident: tuple[int, int]) -> None:
        self.path = path
        self.listener = listener
        self._ident = ident

    async def aclose(self) -> None:
        """Stop listening and remove the socket file, unless another node
        replaced it meanwhile."""
        try:
            info = os.lstat(self.path)
            if (info.st_dev, info.st_ino) == self._ident:
                os.unlink(self.path)
        except OSError:
            pass
        await self.listener.aclose()


def bind_control_socket(path: Path) -> ControlSocket:
    """Listen on ``path`` (mode 0600), replacing a stale socket file.

    Raises:
        ConfigError: a node already answers there, the path is taken by
            something that is not a socket, or it cannot be bound.
    """
    check_socket_path(path)
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        info = os.lstat(path)
    except FileNotFoundError:
        pass
    else:
        if not stat.S_ISSOCK(info.st_mode):
            raise ConfigError(f"{path} exists and is not a socket: move it away to start the node")
        if _answers(path):
            raise ConfigError(f"a node is already running with home {path.parent} (it answers on {path})")
        os.unlink(path)  # left behind by a node that is gone
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    check_socket_path(tmp)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        sock.bind(os.fspath(tmp))
        os.chmod(tmp, 0o600)
        sock.listen(128)
        os.rename(tmp, path)
        info = os.lstat(path)
    except OSError as exc:
        sock.close()
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise ConfigError(f"cannot create the control socket {path}: {exc.strerror or exc}") from exc
    listener = trio.SocketListener(trio.socket.from_stdlib_socket(sock))
    return ControlSocket(path, listener, (info.st_dev, info.st_ino))


async def connect_control(path: Path) -> trio.SocketStream:
    """Connect to the node's control socket.

    Raises:
        NodeNotRunning: nothing listens there.
        ConfigError: the path is unusable.
    """
    check_socket_path(path)
    try:
        return await trio.open_unix_socket(os.fspath(path))
    except OSError as exc:
        raise connect_failure(path, exc) from None
