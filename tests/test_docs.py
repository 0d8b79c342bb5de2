"""The README and docs/: every relative link and image leads to a file or folder that exists, every #anchor to a
heading of its page, the README stays short, names its two set-up commands and links to every page of docs/."""
from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import unquote

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCS = sorted((ROOT / "docs").glob("*.md"))
README_MAX_LINES = 250

FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")
HEADING = re.compile(r"^ {0,3}#{1,6}\s+(.*?)\s*#*\s*$")
# An inline code span may run over a line break, never over a blank line.
CODE_SPAN = re.compile(r"`(?:[^`\n]|\n(?![ \t]*\n))*`")
LINK = re.compile(r"(!?)\[((?:[^\[\]]|\[[^\[\]]*\])*)\]\(\s*<?([^()\s<>]*)>?(?:\s+\"[^\"]*\")?\s*\)")
SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:")


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lowercase, punctuation dropped (hyphens and underscores kept), spaces to
    hyphens."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link in a heading keeps only its text
    return re.sub(r"[^\w\- ]", "", text.strip().lower()).replace(" ", "-")


def _blank(match: re.Match) -> str:
    return re.sub(r"[^\n]", " ", match.group())


def prose(text: str) -> str:
    """The text with fenced code blocks and inline code spans blanked out, lines and offsets kept."""
    lines, fence = [], None
    for line in text.split("\n"):
        opening = FENCE.match(line)
        if fence is None and opening:
            fence = opening.group(1)[0]
            lines.append("")
        elif fence is not None:
            if opening and opening.group(1)[0] == fence:
                fence = None
            lines.append("")
        else:
            lines.append(line)
    masked = "\n".join(lines)
    return CODE_SPAN.sub(_blank, masked)


def anchors(path: Path) -> set[str]:
    """Every heading's anchor in a markdown file, repeated headings numbered as GitHub does (-1, -2, ...)."""
    found: set[str] = set()
    seen: dict[str, int] = {}
    for line in prose(path.read_text(encoding="utf-8")).split("\n"):
        match = HEADING.match(line)
        if not match:
            continue
        base = slug(match.group(1))
        count = seen.get(base, 0)
        seen[base] = count + 1
        found.add(base if count == 0 else f"{base}-{count}")
    return found


def links(path: Path) -> list[tuple[int, str, str]]:
    """(line, the link as written, its target) for every markdown link and image in a file, code left out."""
    text = prose(path.read_text(encoding="utf-8"))
    return [(text.count("\n", 0, m.start()) + 1, " ".join(m.group(0).split()), m.group(3)) for m in LINK.finditer(text)]


def broken_links(path: Path) -> list[str]:
    """One line per link of `path` that leads nowhere: a missing file or folder, or a missing #anchor."""
    problems = []
    for line, written, target in links(path):
        where = f"{path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}:{line}: {written}"
        if not target:
            problems.append(f"{where}: empty target")
            continue
        if SCHEME.match(target):
            continue  # http(s):, mailto: and other absolute addresses are not checked (no network)
        file_part, _, fragment = target.partition("#")
        file_part = unquote(file_part)
        resolved = (path.parent / file_part).resolve() if file_part else path
        if file_part and not resolved.exists():
            problems.append(f"{where}: no file or folder {file_part} (resolved to {resolved})")
            continue
        if fragment and resolved.is_file() and resolved.suffix == ".md" and unquote(fragment) not in anchors(resolved):
            problems.append(f"{where}: no heading with anchor #{fragment} in {resolved.name}")
    return problems


def test_there_are_docs_pages():
    names = {page.name for page in DOCS}
    assert {"cli.md", "method.md", "pages.md", "demo.md", "contributing.md"} <= names, sorted(names)


@pytest.mark.parametrize("page", [README, *DOCS], ids=lambda p: str(p.relative_to(ROOT)))
def test_every_link_and_image_resolves(page):
    problems = broken_links(page)
    assert not problems, "broken links:\n" + "\n".join(problems)


@pytest.mark.parametrize("page", DOCS, ids=lambda p: p.name)
def test_every_docs_page_opens_with_a_title_and_a_link_back_to_the_readme(page):
    lines = page.read_text(encoding="utf-8").split("\n")
    assert lines[0].startswith("# ") and len(lines[0]) > 2, f"{page.name} does not open with a one-line title"
    head = [target for line, _, target in links(page) if line <= 5]
    assert "../README.md" in head, f"{page.name} has no link back to ../README.md in its first lines"


def test_readme_is_short_and_names_the_set_up_commands():
    text = README.read_text(encoding="utf-8")
    assert len(text.splitlines()) <= README_MAX_LINES, f"README.md has {len(text.splitlines())} lines"
    for command in ("make app", "make test"):
        assert command in text, f"README.md does not mention {command}"


def test_readme_links_to_every_docs_page():
    linked = {(ROOT / unquote(target.partition("#")[0])).resolve() for _, _, target in links(README)
              if not SCHEME.match(target) and target.partition("#")[0]}
    missing = [page.name for page in DOCS if page.resolve() not in linked]
    assert not missing, f"README.md links to no docs/{missing}"


def test_slug_follows_github():
    assert slug("Set-up: two commands") == "set-up-two-commands"
    assert slug("The method, and where it differs from the paper's code") == \
        "the-method-and-where-it-differs-from-the-papers-code"
    assert slug("The broad-alignment demo family (`demo-broad`)") == "the-broad-alignment-demo-family-demo-broad"
    assert slug("Caching, devices and memory") == "caching-devices-and-memory"


def test_the_checker_finds_broken_links(tmp_path):
    (tmp_path / "there.md").write_text("# A page\n\n## Its section\n")
    page = tmp_path / "page.md"
    page.write_text("# Page\n\n## Here\n\n"
                    "[fine](there.md#its-section) [fine too](#here) ![image](there.md) [web](https://example.org)\n"
                    "[gone](missing.md) and ![gone image](pics/none.png)\n"
                    "[bad anchor](there.md#no-such-section) [bad local\nanchor](#nowhere)\n"
                    "```bash\n[in code](not-checked.md)\n# not a heading\n```\n`[inline](not-checked.md)`\n")
    problems = broken_links(page)
    assert len(problems) == 4, problems
    assert any("missing.md" in p and ":6:" in p for p in problems), problems
    assert any("pics/none.png" in p for p in problems), problems
    assert any("#no-such-section" in p for p in problems), problems
    assert any("#nowhere" in p and ":7:" in p for p in problems), problems
    assert "not-a-heading" not in anchors(page)
