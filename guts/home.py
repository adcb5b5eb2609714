"""Where a node keeps its state: the node directory (``GUTS_HOME``) and the
names of the files in it.

Apart from :mod:`guts.config` so that what only needs to find a running
node (the ``guts`` commands that ask it, ``git-remote-guts``) imports no
more than this.

Theory of operation
-------------------
The home holds the node's identity key, its stores and its control
socket: only its owner may read it. :func:`prepare_home` is what a node
calls before it opens anything there. It creates the home (and any parent
it has to) with mode 0700, refuses a home that another user owns or that
others can write (they could plant or swap the files the node trusts),
narrows a home that others can only read to 0700, and the files already
in it to 0600 (older versions left ``dht.sqlite`` 0644). Then, unless
told not to, it sets the process umask to 0077, so that every file the
node creates from then on (SQLite databases and their journals, which
SQLite creates with the database's mode, git's storage) is private
without each store having to see to it.
"""

from __future__ import annotations

import logging
import os
import stat
from collections.abc import Mapping
from pathlib import Path

from guts.errors import ConfigError

__all__ = ["CONFIG_FILE", "CONTROL_SOCKET", "KEY_FILE", "default_home", "prepare_home"]

CONFIG_FILE = "config.toml"
KEY_FILE = "identity.key"
CONTROL_SOCKET = "control.sock"

log = logging.getLogger("guts.home")

#: Files in the home that are narrowed at most (a home holds a handful).
_MAX_FILES = 1000


def default_home(env: Mapping[str, str] | None = None) -> Path:
    """``GUTS_HOME``, else ``~/.guts``."""
    env = os.environ if env is None else env
    return Path(env.get("GUTS_HOME") or Path.home() / ".guts").expanduser()


def _make_private_dirs(directory: Path) -> None:
    missing: list[Path] = []
    current = directory
    while not current.exists() and not current.is_symlink():
        missing.append(current)
        if current.parent == current:
            break
        current = current.parent
    for path in reversed(missing):
        try:
            os.mkdir(path, 0o700)
        except FileExistsError:
            pass  # created concurrently: checked below


def prepare_home(home: Path, *, private_umask: bool = True) -> Path:
    """Make ``home`` ready for a node: created 0700, checked, its files 0600.

    Args:
        home: the node's directory.
        private_umask: set the process umask to 0077 so that every file
            the process creates from then on is private (a node's own
            process; a library user may say no).

    Returns:
        ``home``.

    Raises:
        ConfigError: the home is not a directory, belongs to another user,
            or others can write to it (the message says how to fix it); or
            it cannot be created.
    """
    home = Path(home).expanduser()
    try:
        _make_private_dirs(home)
        info = os.stat(home)
    except OSError as exc:
        raise ConfigError(f"node home {home}: {exc.strerror or exc}") from exc
    if not stat.S_ISDIR(info.st_mode):
        raise ConfigError(f"node home {home} is not a directory")
    mode = stat.S_IMODE(info.st_mode)
    if os.name == "posix":
        if info.st_uid != os.geteuid():
            raise ConfigError(
                f"node home {home} belongs to another user (uid {info.st_uid}); "
                "use a home of your own (GUTS_HOME or --home)"
            )
        if mode & 0o022:
            raise ConfigError(
                f"node home {home} can be written by other users (mode {mode:04o}); "
                f"check what is in it, run `chmod 700 {home}` and retry"
            )
        if mode & 0o077:
            log.warning("node home %s was readable by others (mode %04o); narrowed to 0700", home, mode)
            os.chmod(home, 0o700)
        _narrow_files(home)
    if private_umask:
        os.umask(0o077)
    return home


def _narrow_files(home: Path) -> None:
    """Files directly in ``home`` that others may read become 0600."""
    with os.scandir(home) as entries:
        for count, entry in enumerate(entries):
            if count >= _MAX_FILES:
                return
            try:
                info = entry.stat(follow_symlinks=False)
            except OSError:
                continue
            mode = stat.S_IMODE(info.st_mode)
            if stat.S_ISREG(info.st_mode) and mode & 0o077:
                log.warning("%s was open to others (mode %04o); narrowed to 0600", entry.path, mode)
                os.chmod(entry.path, 0o600)
