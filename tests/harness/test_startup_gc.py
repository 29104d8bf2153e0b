"""The garbage collector during a run's start-up (harness.run.startup, docs/performance.md "Start-up"):
paused from the command's start until the runner's workers start, then resumed with start-up's objects
frozen; resumed however the command ends; never touched for library callers."""

from __future__ import annotations

import gc
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.run import startup

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def collector() -> Iterator[None]:
    was, thresholds = gc.isenabled(), gc.get_threshold()
    yield
    gc.unfreeze()
    startup._paused = False
    startup._thresholds = None
    gc.set_threshold(*thresholds)
    if was:
        gc.enable()


def test_a_command_runs_with_the_collector_paused_and_ends_with_it_on(collector: None) -> None:
    seen: list[bool] = []

    @startup.collector_paused
    def command(fail: bool) -> str:
        seen.append(gc.isenabled())
        if fail:
            raise RuntimeError("bad input")
        return "ok"

    before = gc.get_threshold()
    assert command(False) == "ok" and gc.isenabled() and seen == [False]
    with pytest.raises(RuntimeError):
        command(True)
    assert gc.isenabled() and seen == [False, False]  # resumed on the way out of a failure too
    assert gc.get_threshold() == before  # the run's thresholds last as long as the command


def test_resuming_twice_or_without_a_pause_changes_nothing(
    collector: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Counted rather than read from gc.get_freeze_count(): other threads of the test session
    # allocate and free frozen objects meanwhile.
    freezes: list[int] = []
    real_freeze = gc.freeze
    monkeypatch.setattr(gc, "freeze", lambda: (freezes.append(1), real_freeze())[1])
    gc.disable()  # the caller's own choice
    startup.pause_collector()
    startup.resume_collector()
    assert not gc.isenabled() and not freezes  # not ours to turn on
    gc.enable()
    before = gc.get_threshold()
    startup.pause_collector()
    startup.resume_collector()
    assert gc.isenabled() and len(freezes) == 1 and gc.get_threshold() == startup.RUN_THRESHOLDS
    assert gc.get_freeze_count() > 0
    startup.resume_collector()
    assert len(freezes) == 1  # once
    startup.end_of_command()
    assert gc.get_threshold() == before and len(freezes) == 1


def test_a_cli_run_resumes_the_collector_before_its_workers_start(tmp_path: Path) -> None:
    # A fresh interpreter (freezing is for the process's lifetime): record the collector's state when
    # the runner resumes it and when the run's first call is sent, then run the demo on the simulator.
    script = f"""
import gc, json, sys
import harness.run.runner as runner
import harness.run.startup as startup
from adapters.openai_chat import OpenAIChatAdapter
seen = {{}}
real_resume, real_complete = startup.resume_collector, OpenAIChatAdapter.complete
def resume():
    seen.setdefault("paused_until_resume", not gc.isenabled())
    real_resume()
async def complete(self, request):
    seen.setdefault("on_at_first_call", gc.isenabled())
    seen.setdefault("thresholds_at_first_call", list(gc.get_threshold()))
    return await real_complete(self, request)
runner.resume_collector = resume
OpenAIChatAdapter.complete = complete
from harness.cli.main import main
try:
    code = main(["run", "demo", "-m", "openai/gpt-4o-mini", "--sim", "--limit", "3", "--budget", "1",
          "--db", {str(tmp_path / "runs.db")!r}])
finally:
    seen["on_after"] = gc.isenabled()
    seen["thresholds_after"] = list(gc.get_threshold())
    seen["code"] = code
    seen["frozen"] = gc.get_freeze_count()
    print("SEEN" + json.dumps(seen))
"""
    proc = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=100
    )
    line = [x for x in proc.stdout.splitlines() if x.startswith("SEEN")]
    assert proc.returncode == 0 and line, proc.stderr[-2000:]
    seen = json.loads(line[0][4:])
    assert seen == {
        "paused_until_resume": True,
        "on_at_first_call": True,
        "on_after": True,
        "thresholds_at_first_call": list(startup.RUN_THRESHOLDS),
        "thresholds_after": [700, 10, 10],  # CPython's defaults, which the command started with
        "code": 0,
        "frozen": seen["frozen"],
    }, seen
    assert seen["frozen"] > 10_000  # the SDKs' classes, the plan, the store: all frozen
