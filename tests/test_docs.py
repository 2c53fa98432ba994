"""The docs live in the repository and stay true: the generated reference is fresh, and no file
of the project points at a document outside it."""

from __future__ import annotations

import importlib.util
import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _reference_module() -> object:
    spec = importlib.util.spec_from_file_location("docs_reference", ROOT / "docs" / "reference.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_reference_is_generated_from_the_names_and_fresh() -> None:
    module = _reference_module()
    expected = module.render()  # type: ignore[attr-defined]
    assert (ROOT / "docs" / "reference.md").read_text() == expected, "run `make docs`"


def test_every_attribute_has_a_meaning() -> None:
    from otel_agents import names as n

    for span in n.SPANS:
        for attribute in span.attributes:
            assert n.ATTRIBUTE_HELP.get(attribute), attribute


def test_nothing_cites_documents_outside_the_repository() -> None:
    tracked = subprocess.run(
        ["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    outside = re.compile(r"DESIGN\.md|livekit-internals|\.\./shared|\bseed 00\d|field report")
    offenders = [
        f"{path}:{i}"
        for path in tracked
        if path.endswith((".py", ".md", ".toml", ".yml", ".yaml", "Makefile", "Dockerfile"))
        and path != "tests/test_docs.py"
        and (ROOT / path).exists()  # tracked, but deleted in the working tree: cites nothing
        for i, line in enumerate((ROOT / path).read_text(errors="replace").splitlines(), 1)
        if outside.search(line)
    ]
    assert offenders == []


def test_docs_name_files_that_exist() -> None:
    for doc in (ROOT / "docs").glob("*.md"):
        for ref in re.findall(
            r"`((?:otel_agents|tests|dashboards|bench|docs)/[\w/.-]+\.\w+)`", doc.read_text()
        ):
            assert (ROOT / ref).exists(), f"{doc.name}: {ref}"
