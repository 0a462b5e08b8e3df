"""The README is the front door: short, and linking every page of ``docs/``; every relative link
(and its ``#anchor``) in the README, ``docs/`` and ``benchmarks/`` leads somewhere that exists."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
MAX_README_LINES = 260

FENCE = re.compile(r"^(```|~~~).*?^\1", re.M | re.S)
CODE = re.compile(r"`[^`\n]*`")
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
HEADING = re.compile(r"^#{1,6}\s+(.+?)\s*#*\s*$", re.M)
EXPLICIT_ANCHOR = re.compile(r"<a\s+(?:name|id)=\"([^\"]+)\"")


def prose(text: str) -> str:
    """``text`` without fenced code blocks (whose ``#`` lines are no headings, whose brackets
    no links)."""
    return FENCE.sub("", text)


def links(text: str) -> list[str]:
    """Targets of the markdown links and images in ``text``, outside code."""
    return LINK.findall(CODE.sub("", prose(text)))


def slug(heading: str) -> str:
    """The anchor GitHub gives a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link keeps its text
    text = text.replace("`", "").strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(text: str) -> set[str]:
    """Every anchor a page defines: its headings' slugs (repeats numbered, as GitHub does) and
    explicit ``<a id=...>`` tags."""
    found: set[str] = set(EXPLICIT_ANCHOR.findall(text))
    seen: dict[str, int] = {}
    for heading in HEADING.findall(prose(text)):
        base = slug(heading)
        n = seen.get(base, 0)
        seen[base] = n + 1
        found.add(base if n == 0 else f"{base}-{n}")
    return found


def broken_links(pages: dict[Path, str]) -> list[str]:
    """Relative links among ``pages`` (path to text) whose file, or anchor, does not exist."""
    problems = []
    for page, text in sorted(pages.items()):
        for target in links(text):
            if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto:
                continue
            path, _, anchor = target.partition("#")
            file = (page.parent / path).resolve() if path else page
            where = f"{page.relative_to(ROOT)}: ({target})"
            if not file.exists():
                problems.append(f"{where}: no file {path}")
            elif anchor and file.suffix == ".md":
                text_there = pages.get(file) or file.read_text(encoding="utf-8")
                if anchor not in anchors(text_there):
                    problems.append(f"{where}: {file.name} has no heading #{anchor}")
    return problems


def unlinked(readme: Path, text: str, pages: list[Path]) -> list[str]:
    """The ``pages`` no link of the README (``text``) leads to."""
    targets = {(readme.parent / t.partition("#")[0]).resolve() for t in links(text) if ":" not in t}
    return [str(p.relative_to(ROOT)) for p in pages if p.resolve() not in targets]


def doc_pages() -> list[Path]:
    return sorted((ROOT / "docs").glob("*.md"))


def checked_pages() -> dict[Path, str]:
    files = [README, *doc_pages(), *sorted((ROOT / "benchmarks").glob("*.md"))]
    return {path.resolve(): path.read_text(encoding="utf-8") for path in files}


def test_the_readme_links_every_docs_page() -> None:
    pages = doc_pages()
    assert len(pages) >= 10  # the glob found the pages at all
    assert unlinked(README, README.read_text(encoding="utf-8"), pages) == []


def test_every_relative_link_resolves() -> None:
    pages = checked_pages()
    assert sum(len(links(text)) for text in pages.values()) > 20
    assert broken_links(pages) == []


def test_the_readme_is_a_front_door() -> None:
    n_lines = len(README.read_text(encoding="utf-8").splitlines())
    assert n_lines < MAX_README_LINES, f"README.md has {n_lines} lines: move the detail to docs/"


def test_an_unlinked_page_is_caught() -> None:
    readme = README.read_text(encoding="utf-8")
    page = doc_pages()[0]
    name = page.relative_to(ROOT).as_posix()
    without = re.sub(rf"\]\({re.escape(name)}(#[^)]*)?\)", "](elsewhere.md)", readme)
    assert without != readme, f"the README has no link to {name}"
    assert unlinked(README, without, doc_pages()) == [name]


def test_a_missing_file_or_anchor_is_caught() -> None:
    page = (ROOT / "docs" / "guarantees.md").resolve()
    text = "## Delivery\n[a](metrics.md#no-such-heading) [b](nowhere.md) [c](#delivery)\n"
    text += "```sh\n[d](x.md)\n```\n"  # code, not a link
    found = broken_links({page: text})
    assert len(found) == 2, found
    assert "no heading #no-such-heading" in found[0] and "no file nowhere.md" in found[1]


def test_anchors_follow_githubs_slugs() -> None:
    text = "# Guarantees, as measured\n## `kafka.library` and the clients\n## Scale\n## Scale\n"
    text += "```sh\n# a comment, not a heading\n```\n"
    assert anchors(text) == {
        "guarantees-as-measured",
        "kafkalibrary-and-the-clients",
        "scale",
        "scale-1",
    }


def blocks(text: str, language: str) -> list[str]:
    return re.findall(rf"^```{language}\n(.*?)^```", text, re.M | re.S)


def test_the_readmes_examples_are_the_tested_ones() -> None:
    """The README's records are examples of docs/events.md (which test_events.py checks against
    the encoder), and its config is one the settings model accepts."""
    import yaml

    from worker.config import settings_from_dict

    readme = README.read_text(encoding="utf-8")
    events = (ROOT / "docs" / "events.md").read_text(encoding="utf-8")
    records, configs = blocks(readme, "json"), blocks(readme, "yaml")
    assert records and configs
    assert [r for r in records if r not in blocks(events, "json")] == []
    for config in configs:
        settings_from_dict(yaml.safe_load(config))
