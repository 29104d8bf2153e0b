"""The generic import names ``harness``, ``adapters`` and ``suites`` must be ours (docs/design.md layout)."""

from __future__ import annotations

import re
from pathlib import Path

import adapters
import harness
import suites

ROOT = Path(__file__).resolve().parents[1]


def test_imported_packages_are_this_projects() -> None:
    for mod in (harness, adapters, suites):
        assert mod.__file__ is not None
        where = Path(mod.__file__).resolve().parent.parent
        assert where == ROOT, f"{mod.__name__} is shadowed by {mod.__file__}"


def test_readme_commands_and_ci_agree() -> None:
    readme = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```(?:bash|sh)?\n(.*?)```", readme, re.S)
    assert len(blocks) >= 2, "the README opens with two commands"
    main_job, test_cmd = blocks[0].strip(), blocks[1].strip()
    assert "tollbench run" in main_job and "--sim" in main_job and "--budget" in main_job
    assert "pytest" in test_cmd
    ci = (ROOT / ".ci" / "run").read_text()
    # CI runs the README's test command (after its own venv setup), verbatim.
    install_and_test = test_cmd.split("&&", 2)[-1].strip()
    assert install_and_test in ci
