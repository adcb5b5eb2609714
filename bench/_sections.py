"""Marked sections of BENCHMARKS.md that the benchmark commands rewrite."""

from __future__ import annotations

from pathlib import Path

BENCHMARKS_MD = Path(__file__).resolve().parent.parent / "BENCHMARKS.md"


def write_section(marker: str, markdown: str, *, heading: str | None = None, path: Path = BENCHMARKS_MD) -> None:
    """Put ``markdown`` between ``<!-- MARKER:begin -->`` and ``<!-- MARKER:end -->``.

    A section seen for the first time is appended, under ``heading`` if given.
    """
    begin, end = f"<!-- {marker}:begin -->", f"<!-- {marker}:end -->"
    text = path.read_text()
    block = f"{begin}\n\n{markdown.strip()}\n\n{end}"
    if begin in text and end in text:
        head, rest = text.split(begin, 1)
        _, tail = rest.split(end, 1)
        text = head + block + tail
    else:
        title = f"## {heading}\n\n" if heading else ""
        text = text.rstrip("\n") + "\n\n" + title + block + "\n"
    path.write_text(text)
