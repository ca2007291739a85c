"""The README is a front door: at most 8 KB, and every topic file in docs/ is one link away.

Relative links in README.md and docs/ must name files that exist, without anchors (headings change; a file
name is checked here, an anchor would not be).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
DOCS = REPO / "docs"
README_LIMIT = 8192  # bytes

# [text](target) and [text](target "title"); reference definitions `[label]: target`.
_INLINE = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
_REFDEF = re.compile(r"^\s{0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s+.*)?$", re.M)
_FENCE = re.compile(r"^(```|~~~).*?^\1[^\n]*$", re.M | re.S)
_CODE_SPAN = re.compile(r"(`+)(?!`).*?(?<!`)\1(?!`)", re.S)
_SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:")


def _doc_files() -> list[Path]:
    return sorted(DOCS.glob("*.md")) + sorted(DOCS.glob("*/README.md"))


def _links(md: Path) -> list[str]:
    """Link targets of a Markdown file, code blocks and code spans left out."""
    text = _CODE_SPAN.sub("", _FENCE.sub("", md.read_text(encoding="utf-8")))
    return _INLINE.findall(text) + _REFDEF.findall(text)


def _relative(target: str) -> bool:
    return not _SCHEME.match(target) and not target.startswith("//")


def test_readme_is_at_most_8_kb():
    size = README.stat().st_size
    assert size <= README_LIMIT, f"README.md is {size} bytes (limit {README_LIMIT}): move reference material to docs/"


@pytest.mark.parametrize("md", [README, *_doc_files()], ids=lambda p: str(p.relative_to(REPO)))
def test_relative_links_name_existing_files_without_anchors(md: Path):
    problems = []
    for target in _links(md):
        if not _relative(target):
            continue
        if "#" in target:
            problems.append(f"{target}: anchor (link the file, not a heading)")
            continue
        if not (md.parent / target).resolve().exists():
            problems.append(f"{target}: no such file")
    assert not problems, f"{md.relative_to(REPO)}: " + "; ".join(problems)


def test_readme_links_every_docs_topic():
    linked = {(README.parent / t).resolve() for t in _links(README) if _relative(t) and "#" not in t}
    topics = sorted(DOCS.glob("*.md"))
    assert topics, "docs/ has no topic files"
    missing = [str(p.relative_to(REPO)) for p in topics if p.resolve() not in linked]
    assert not missing, f"README.md does not link: {', '.join(missing)}"


def test_link_parser_sees_links_and_skips_code(tmp_path: Path):
    md = tmp_path / "x.md"
    md.write_text('See [a](a.md), [b](sub/b.md "title") and [c][c].\n\n[c]: https://example.org\n'
                  "`[not](code.md)`\n\n```\n[neither](block.md)\n```\n", encoding="utf-8")
    assert sorted(_links(md)) == ["a.md", "https://example.org", "sub/b.md"]


def test_checkpoints_page_names_every_layout():
    """docs/checkpoints.md cannot drift from transfer/layouts.py: every Layout appears by name."""
    from transfer.layouts import LAYOUTS

    text = (DOCS / "checkpoints.md").read_text(encoding="utf-8")
    missing = [lay.name for lay in LAYOUTS if f"`{lay.name}`" not in text]
    assert not missing, f"docs/checkpoints.md does not list layouts: {', '.join(missing)}"
