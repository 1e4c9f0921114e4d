"""The README and the docs/ pages: links that resolve, a README a newcomer reads, a site that builds.

mkdocs checks the links between docs/ pages (``mkdocs build --strict``, the slow test below); the
README lives outside docs/, so its links are checked here, anchors by GitHub's heading slugs (the
README is read on the repository's page, where GitHub makes the anchors).
"""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCS = ROOT / "docs"
MAX_README_LINES = 250
MAX_PROSE_COLUMNS = 100

_FENCE = re.compile(r"^\s*(```|~~~)")
_CODE_SPAN = re.compile(r"(`+)(.+?)\1")
_LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
_REF_DEF = re.compile(r"^\s{0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s.*)?$")
_ATX = re.compile(r"^\s{0,3}(#{1,6})\s+(.*?)(?:\s+#+)?\s*$")
_HTML_ID = re.compile(r"""<a\s[^>]*\b(?:id|name)=["']([^"']+)["']""")
_SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:")


def outside_code(text: str) -> list[tuple[int, str]]:
    """(line number, line) of every line outside fenced code blocks."""
    lines, fenced = [], False
    for number, line in enumerate(text.splitlines(), start=1):
        if _FENCE.match(line):
            fenced = not fenced
            continue
        if not fenced:
            lines.append((number, line))
    return lines


def _plain(heading: str) -> str:
    """A heading's text as rendered: code spans keep their content, links their text."""
    text = _CODE_SPAN.sub(lambda m: m.group(2), heading)
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", text)
    return re.sub(r"<[^>]+>", "", text)


def github_slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation and symbols dropped (word
    characters, hyphens and spaces stay), each space a hyphen."""
    text = _plain(heading).strip().lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    """Every anchor GitHub makes in a markdown file: heading slugs (a repeated slug gets -1,
    -2, ...) and explicit ``<a id=...>``."""
    found: set[str] = set()
    seen: dict[str, int] = {}
    previous = ""
    for _, line in outside_code(path.read_text(encoding="utf-8")):
        found.update(_HTML_ID.findall(line))
        heading = None
        if m := _ATX.match(line):
            heading = m.group(2)
        elif (
            re.fullmatch(r"\s{0,3}(=+|-+)\s*", line)
            and previous.strip()
            and not previous.lstrip().startswith(("|", "#", "-", "*", ">"))
        ):
            heading = previous  # a setext heading: the line above, underlined
        previous = line
        if heading is None:
            continue
        slug = github_slug(heading)
        if slug in seen:
            seen[slug] += 1
            slug = f"{slug}-{seen[slug]}"
        else:
            seen[slug] = 0
        found.add(slug)
    return found


def links(path: Path) -> list[tuple[int, str]]:
    """(line number, target) of every inline link, image and reference definition outside code."""
    out = []
    for number, line in outside_code(path.read_text(encoding="utf-8")):
        line = _CODE_SPAN.sub("", line)
        out += [(number, target) for target in _LINK.findall(line)]
        if m := _REF_DEF.match(line):
            out.append((number, m.group(1)))
    return out


def broken_links(path: Path, root: Path = ROOT) -> list[str]:
    """Each relative link of a markdown file whose file or anchor does not exist, or that leaves
    ``root``, in words."""
    broken = []
    for number, target in links(path):
        if _SCHEME.match(target):
            continue  # not relative: test_readme_points_inside_the_repository says more
        file, _, anchor = target.partition("#")
        where = (path.parent / file).resolve() if file else path
        if not where.exists():
            broken.append(f"{path.name}:{number}: {target}: no such file {where}")
            continue
        if not where.is_relative_to(root):
            broken.append(f"{path.name}:{number}: {target}: outside the repository")
            continue
        if anchor and where.suffix == ".md" and anchor not in anchors(where):
            broken.append(f"{path.name}:{number}: {target}: no heading #{anchor} in {where.name}")
    return broken


def long_prose(path: Path, limit: int = MAX_PROSE_COLUMNS) -> list[str]:
    """Lines of prose (not code blocks, not tables) longer than ``limit`` characters."""
    return [
        f"{path.name}:{number}: {len(line)} columns: {line[:60]}..."
        for number, line in outside_code(path.read_text(encoding="utf-8"))
        if len(line) > limit and not line.lstrip().startswith("|")
    ]


def test_readme_links_resolve():
    assert links(README), "the README links to nothing: the docs index is missing"
    assert broken_links(README) == []


def test_readme_points_inside_the_repository():
    outside = [f"README.md:{n}: {t}" for n, t in links(README) if _SCHEME.match(t)]
    assert outside == [], "nothing in the repository may point outside it"


def test_readme_is_short_and_wrapped():
    lines = README.read_text(encoding="utf-8").splitlines()
    assert len(lines) <= MAX_README_LINES, f"README.md has {len(lines)} lines"
    assert long_prose(README) == []


def test_docs_links_resolve_on_github_too():
    """mkdocs checks the pages' links by its own heading slugs; on the repository's page GitHub
    makes the anchors, so they must resolve by its rule as well."""
    assert [b for page in sorted(DOCS.rglob("*.md")) for b in broken_links(page)] == []


def test_docs_prose_is_wrapped():
    assert [line for page in sorted(DOCS.rglob("*.md")) for line in long_prose(page)] == []


_PLACEHOLDER = re.compile(r"^\s*[A-Z][A-Z0-9]*_[A-Z0-9_]+\s*$")  # MEASURED_FEED, TABLE_X


def test_no_page_holds_a_placeholder_for_its_figures():
    """A table still to be measured is a line like TABLE_BACKENDS; it must not land."""
    found = [
        f"{page.name}:{number}: {line.strip()}"
        for page in [README, *sorted(DOCS.rglob("*.md"))]
        for number, line in outside_code(page.read_text(encoding="utf-8"))
        if _PLACEHOLDER.match(line)
    ]
    assert found == []


def test_readme_indexes_every_docs_page():
    linked = {(README.parent / t.partition("#")[0]).resolve() for _, t in links(README)}
    pages = {p.resolve() for p in DOCS.rglob("*.md") if p.name != "index.md"}
    assert sorted(p.name for p in pages - linked) == []


def test_the_checker_finds_a_broken_link_and_anchor(tmp_path):
    page = tmp_path / "page.md"
    page.write_text(
        "# Set up — and `run` it\n\n## Set up — and `run` it\n\n"
        "[ok](#set-up--and-run-it) [ok](#set-up--and-run-it-1) [ok](page.md#set-up--and-run-it)\n"
        "[bad](#set-up) [bad](missing.md) `[ignored](nowhere.md)`\n\n"
        "```\n[ignored](nowhere.md)\n# not a heading\n```\n",
        encoding="utf-8",
    )
    found = [b.split(": ", 2)[1] for b in broken_links(page, root=tmp_path)]
    assert found == ["#set-up", "missing.md"]
    assert github_slug("When things go wrong") == "when-things-go-wrong"
    assert github_slug("Large data: `mmap`, 3×224 (RAM)") == "large-data-mmap-3224-ram"


@pytest.mark.slow
def test_site_builds_strict(tmp_path):
    """``mkdocs build --strict`` fails on a broken link or anchor between the docs pages, or a
    page missing from the nav (mkdocs.yml's ``validation``)."""
    missing = [m for m in ("mkdocs", "material") if importlib.util.find_spec(m) is None]
    if missing:
        pytest.skip(f"{' and '.join(missing)} not installed: pip install -e '.[docs]'")
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert (tmp_path / "site" / "index.html").exists()
