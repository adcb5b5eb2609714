"""The checked-in guts/pb modules are exactly what `make proto` generates."""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_generated_code_is_up_to_date(tmp_path: Path) -> None:
    pytest.importorskip("grpc_tools")
    protos = sorted(str(p.relative_to(ROOT)) for p in (ROOT / "proto").glob("*.proto"))
    subprocess.run(
        [sys.executable, "-m", "grpc_tools.protoc", "-Iproto",
         f"--python_out={tmp_path}", f"--pyi_out={tmp_path}", *protos],
        cwd=ROOT, check=True,
    )
    generated = sorted(p.name for p in tmp_path.iterdir())
    checked_in = sorted(p.name for p in (ROOT / "guts" / "pb").iterdir() if p.name.endswith(("_pb2.py", "_pb2.pyi")))
    assert generated == checked_in
    for name in generated:
        assert (tmp_path / name).read_text() == (ROOT / "guts" / "pb" / name).read_text(), (
            f"guts/pb/{name} is stale: run `make proto`"
        )
