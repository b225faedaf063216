"""The documentation stands on its own: no page sends a user to a document
they do not have (before: docs/orca-schema.md said "follows
`docs/orca-schema.md` of the brief", a file of the project's own notes)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parent.parent / "docs"
PAGES = sorted(DOCS.glob("*.md"))
README = DOCS.parent / "README.md"

# Phrases that point outside what a user has: the project's internal notes.
ELSEWHERE = re.compile(r"\bof the brief\b|\bthe brief\b|/work/|\bshared/docs\b|\bseed notes\b")


@pytest.mark.parametrize("page", [*PAGES, README], ids=lambda path: path.name)
def test_no_page_points_at_a_document_users_do_not_have(page):
    found = ELSEWHERE.findall(page.read_text())
    assert found == [], f"{page.name} refers to {found}"
