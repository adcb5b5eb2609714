"""Where a node keeps its state: the node directory (``GUTS_HOME``) and the
names of the files in it.

Apart from :mod:`guts.config` so that what only needs to find a running
node (the ``guts`` commands that ask it, ``git-remote-guts``) imports no
more than this.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

__all__ = ["CONFIG_FILE", "CONTROL_SOCKET", "KEY_FILE", "default_home"]

CONFIG_FILE = "config.toml"
KEY_FILE = "identity.key"
CONTROL_SOCKET = "control.sock"


def default_home(env: Mapping[str, str] | None = None) -> Path:
    """``GUTS_HOME``, else ``~/.guts``."""
    env = os.environ if env is None else env
    return Path(env.get("GUTS_HOME") or Path.home() / ".guts").expanduser()
