"""User docs stay true: the CLI reference is generated from the commands themselves."""

from __future__ import annotations

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_cli_reference_is_current() -> None:
    spec = importlib.util.spec_from_file_location("gen_cli_docs", ROOT / "scripts" / "gen_cli_docs.py")
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    current = (ROOT / "docs" / "cli.md").read_text()
    assert current == mod.render(), "docs/cli.md is stale: python scripts/gen_cli_docs.py > docs/cli.md"


def test_docs_the_readme_links_exist() -> None:
    readme = (ROOT / "README.md").read_text()
    for name in ("quickstart", "cli", "budget", "storage", "pricing", "adapters", "suites", "simulator"):
        assert f"docs/{name}.md" in readme
        assert (ROOT / "docs" / f"{name}.md").is_file(), name
