"""Every `docs/` path and section anchor cited in the code, the configuration and the markdown
exists, so a citation cannot rot when a document or a section moves.

Two forms are checked: a path from the repository's root anywhere in a text file
(``docs/devices/evaluator-bus-ff68.md#frame`` in a comment), and a relative markdown link that
lands in `docs/` (``[field notes](../../docs/field-notes.md#mosquitto)``), or any relative link
inside `docs/` itself. An anchor is an explicit ``<a id="…">`` or a heading's GitHub slug.
"""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"

SCANNED_SUFFIXES = frozenset(
    {".py", ".md", ".sh", ".yaml", ".yml", ".toml", ".service", ".conf", ".in", ".ini", ".html"}
)
SKIPPED_DIRS = frozenset(
    {".git", ".venv", "var", "test-output", "__pycache__", "vendor", "node_modules"}
    | {".mypy_cache", ".ruff_cache", ".pytest_cache", ".hypothesis"}
)

# A root-relative citation, not the tail of a longer path or URL (`/docs` is the API's OpenAPI).
CITATION = re.compile(r"(?<![\w./-])docs/[\w./-]*(?:#[\w-]+)?")
MARKDOWN_LINK = re.compile(r"\]\(([^)\s]+)\)")
EXPLICIT_ANCHOR = re.compile(r"""<a\s+(?:id|name)=["']([^"']+)["']""")
HEADING = re.compile(r"^#{1,6}\s+(.+?)\s*#*\s*$", re.MULTILINE)
# How the documents were cited before they were in the repository.
OUTSIDE_CITATION = re.compile(r"FIELD-NOTES|(?<![\w.-])shared/devices/|\.\./shared/")


def github_slug(heading: str) -> str:
    """The anchor GitHub gives a heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


@cache
def anchors(doc: Path) -> frozenset[str]:
    text = doc.read_text(encoding="utf-8")
    return frozenset(EXPLICIT_ANCHOR.findall(text)) | {
        github_slug(h) for h in HEADING.findall(text)
    }


def _problem(target: Path, anchor: str, cited: str) -> str | None:
    if not target.exists():
        return f"{cited}: no such file"
    if anchor and (target.suffix != ".md" or anchor not in anchors(target)):
        return f"{cited}: no section #{anchor}"
    return None


def broken_citations(text: str, source: Path, root: Path = ROOT) -> list[str]:
    """What `text` (the content of `source`) cites in `root/docs` that does not exist."""
    problems: list[str | None] = [
        f"{m.group()}: outside the repository" for m in OUTSIDE_CITATION.finditer(text)
    ]
    for match in CITATION.finditer(text):
        cited = match.group().rstrip(".")
        path, _, anchor = cited.partition("#")
        problems.append(_problem(root / path, anchor, cited))
    if source.suffix == ".md":
        docs = (root / "docs").resolve()
        for link in MARKDOWN_LINK.findall(text):
            if re.match(r"[a-z][a-z0-9+.-]*:", link):  # http:, mailto:
                continue
            path, _, anchor = link.partition("#")
            target = (source.parent / path).resolve() if path else source.resolve()
            inside_docs = source.resolve().is_relative_to(docs)
            if inside_docs or target.is_relative_to(docs):
                problems.append(_problem(target, anchor, link))
    shown = source.relative_to(root) if source.is_relative_to(root) else source
    return [f"{shown}: {p}" for p in problems if p]


def scanned_files(root: Path = ROOT) -> list[Path]:
    found = []
    for path in root.rglob("*"):
        parts = set(path.relative_to(root).parts[:-1])
        if parts & SKIPPED_DIRS or any(p.endswith(".egg-info") for p in parts):
            continue
        if path.is_file() and path.suffix in SCANNED_SUFFIXES:
            found.append(path)
    return found


def test_every_cited_document_and_section_exists() -> None:
    this_file = Path(__file__).resolve()  # its docstring and tests cite examples on purpose
    problems = []
    cited = 0
    for path in scanned_files():
        if path.resolve() == this_file:
            continue
        text = path.read_text(encoding="utf-8", errors="replace")
        cited += len(CITATION.findall(text))
        problems += broken_citations(text, path)
    assert not problems, "\n".join(problems)
    assert cited >= 10  # the scan does see the code's citations


def test_the_documents_the_code_cites_are_there() -> None:
    for doc in ("design", "field-notes", "devices/evaluator-bus-ff68", "devices/queue-machine-qm"):
        assert (DOCS / f"{doc}.md").is_file()
    assert {"frame", "events", "commands", "worked-example"} <= anchors(
        DOCS / "devices" / "evaluator-bus-ff68.md"
    )
    assert "mosquitto" in anchors(DOCS / "field-notes.md")


@pytest.mark.parametrize(
    "text",
    [
        "# see docs/devices/nowhere.md",
        "# docs/field-notes.md#no-such-section: the broker",
        "# the frame (docs/devices/evaluator-bus-ff68.md#fram).",
        "# a section of a folder: docs/devices/#frame",
        "# the ACL bites at delivery (FIELD-NOTES)",
        "# specified in `shared/devices/evaluator-bus-ff68.md`",
    ],
)
def test_a_bad_citation_in_code_is_reported(text: str) -> None:
    assert len(broken_citations(text, Path("edge/example.py"))) == 1


@pytest.mark.parametrize(
    ("text", "source"),
    [
        ("[notes](../../docs/field-notes.md#nope)", "deploy/mosquitto/README.md"),
        ("[manual](../../docs/devices/ff68.md)", "firmware_bridges/ff68/README.md"),
        ("[design](desing.md)", "docs/README.md"),
        ("[layout](#no-such-heading)", "docs/design.md"),
    ],
)
def test_a_bad_markdown_link_into_docs_is_reported(text: str, source: str) -> None:
    assert len(broken_citations(text, ROOT / source)) == 1


def test_good_citations_are_not_reported() -> None:
    code = (
        "# docs/devices/evaluator-bus-ff68.md#frame, docs/field-notes.md#mosquitto.\n"
        "# (docs/devices/queue-machine-qm.md) docs/devices/ and the API's /docs/oauth2-redirect\n"
    )
    assert broken_citations(code, Path("edge/example.py")) == []
    markdown = (
        "[notes](../../docs/field-notes.md#mosquitto) [spec](../../docs/devices/) "
        "[elsewhere](../README.md#anything) [web](https://example.org/docs/x.md#y)"
    )
    assert broken_citations(markdown, ROOT / "deploy" / "mosquitto" / "README.md") == []
    slug = "device--host-events-addr--the-devices-own-address"  # a heading's, not an explicit id
    heading = f"[events](devices/evaluator-bus-ff68.md#{slug})"
    assert broken_citations(heading, ROOT / "docs" / "README.md") == []
