"""What a user reads: README.md and the pages of docs/. A test that runs a command as a user types it first checks
that one of these pages shows it (tests/test_readme.py checks the other direction: every shown command is run)."""

from __future__ import annotations

from helpers.paths import REPO

PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
SHOWN = "".join(page.read_text() for page in PAGES)


def assert_shown(line: str) -> None:
    assert line in SHOWN, f"neither README.md nor docs/*.md shows {line!r}"
