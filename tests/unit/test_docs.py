"""The docs name only files that exist, and the README's module map names every module."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
PATH = re.compile(r"streamapp/[A-Za-z0-9_/]+\.py\b")


def test_every_streamapp_path_in_the_docs_exists() -> None:
    missing = [
        f"{doc.relative_to(ROOT)}:{number}: {path}"
        for doc in DOCS
        for number, line in enumerate(doc.read_text().splitlines(), 1)
        for path in PATH.findall(line)
        if not (ROOT / path).is_file()
    ]
    assert missing == []


def architecture_section() -> str:
    text = (ROOT / "README.md").read_text()
    start = text.index("\n## Architecture\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end != -1 else len(text)]


def test_the_readme_module_map_names_every_module() -> None:
    mapped = set(PATH.findall(architecture_section()))
    modules = {
        path.relative_to(ROOT).as_posix()
        for path in (ROOT / "streamapp").rglob("*.py")
        if path.name != "__init__.py"
    }
    assert sorted(modules - mapped) == []
    assert sorted(mapped - modules) == []  # and nothing that is not there
