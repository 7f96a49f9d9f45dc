"""Every cited source resolves in docs/sources.md, and user-facing text cites only what ships."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SOURCES = ROOT / "docs" / "sources.md"
TEXT_SUFFIXES = {".py", ".md", ".yaml", ".yml", ".json", ".toml", ".txt"}
TAG = re.compile(r"\[(S\d+[a-z]?)\]")
ENTRY = re.compile(r"^\s*- \*\*\[(S\d+[a-z]?)\]\*\*", re.MULTILINE)


def user_facing_files() -> list[Path]:
    files = [ROOT / "README.md"]
    for top in ("src", "docs"):
        files += [p for p in sorted((ROOT / top).rglob("*")) if p.is_file() and p.suffix in TEXT_SUFFIXES
                  and "egg-info" not in str(p)]
    return files


def cited_ids() -> dict[str, list[str]]:
    cited: dict[str, list[str]] = {}
    for path in user_facing_files():
        if path == SOURCES:
            continue
        for tag in TAG.findall(path.read_text(encoding="utf-8", errors="replace")):
            cited.setdefault(tag, []).append(str(path.relative_to(ROOT)))
    return cited


def entries() -> dict[str, str]:
    """id -> the text of its entry in docs/sources.md (up to the next entry or heading)."""
    text = SOURCES.read_text(encoding="utf-8")
    marks = list(ENTRY.finditer(text))
    out = {}
    for i, m in enumerate(marks):
        end = marks[i + 1].start() if i + 1 < len(marks) else len(text)
        out[m.group(1)] = text[m.start():end].split("\n## ")[0]
    return out


def test_every_cited_id_has_an_entry_with_a_url():
    cited, listed = cited_ids(), entries()
    assert cited, "no [S…] citations found: the scan is broken"
    missing = {tag: where[:3] for tag, where in cited.items() if tag not in listed}
    assert not missing, f"cited but not in docs/sources.md: {missing}"
    no_url = [tag for tag in cited if "http" not in listed[tag]]
    assert not no_url, f"entries without a URL: {no_url}"


def test_sources_is_linked_from_readme_and_architecture():
    for doc in ("README.md", "docs/architecture.md"):
        assert "docs/sources.md" in (ROOT / doc).read_text(encoding="utf-8"), doc


def test_no_user_facing_text_cites_the_internal_brief():
    # "seed" meaning the project's internal experiment brief; random seeding ("seed 0", "seeded") is fine.
    brief = re.compile(r"\bseed's\b|\bthe seed\b(?! of\b)", re.IGNORECASE)
    hits = [f"{p.relative_to(ROOT)}:{n}" for p in user_facing_files()
            for n, line in enumerate(p.read_text(encoding="utf-8", errors="replace").splitlines(), 1)
            if brief.search(line)]
    assert not hits, hits


def test_no_user_facing_text_points_at_files_that_do_not_ship():
    outside = re.compile(r"\b(design|hardware_models|implementations|simulators|paper|aesthetics|helix-experiments)"
                         r"\.md\b|shared/(reference|data|seed)/")
    hits = [f"{p.relative_to(ROOT)}:{n}" for p in user_facing_files()
            for n, line in enumerate(p.read_text(encoding="utf-8", errors="replace").splitlines(), 1)
            if outside.search(line)]
    assert not hits, hits
