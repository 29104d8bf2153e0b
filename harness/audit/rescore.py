"""Re-score a run's stored answers with today's scorers: nothing is sent, nothing is paid, nothing is
written.

Works on any run, bought here or imported from a bundle. For each item result that holds an answer
(``scored`` or ``unusable``):

1. the answer is the one the run scored: the text and normalised finish reason of its final call
   (``calls.response``, also on ``cached`` rows), or, for a call row without a stored answer (older
   databases), the item result's ``answer_text`` with the finish reason its recorded reason implies;
2. the prompt is rebuilt the way the run built it: the suites are loaded again from the run's stored
   options (``runs.config["options"]``: suite names, ``--data``, suite options, ``--seed``) and each
   (item, repeat) is rendered again; no model, price or API key is needed. When the rendered messages
   differ from the request the call stored, the answer is still re-scored (against today's prompt)
   and counted as a prompt mismatch;
3. the answer is scored with :func:`harness.suite.score_answer`, the runner's rules (a refusal or an
   empty answer is unusable; a cut answer without an extractable answer is unusable ``truncated``);
   a judged suite's answer (``hle``) is scored from its stored judge reply (none: ``unscored``).

Item results ``not_run`` and ``error`` have no answer and are only counted. A suite whose data cannot
be loaded here (an imported run whose data file is elsewhere) is a :class:`~harness.errors.DataError`
that names the suite and the file and says to pass ``data`` (``--data``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import sqlalchemy as sa

from harness.errors import ConfigError, DataError
from harness.run.cache import canonical_message
from harness.run.plan import DONE_STATUSES, options_from_config
from harness.stats.intervals import accuracy_ci
from harness.store.engine import Store, calls_table
from harness.suite import Item, JudgedSuite, Score, Suite, score_answer
from harness.types import Prompt

__all__ = [
    "ChangedItem",
    "RescoreGroup",
    "RescoreJob",
    "RescoreResult",
    "load_run_suites",
    "prepare_rescore",
    "rescore_run",
    "score_job",
    "verdict",
]

#: Answers scored at the same time (math-verify checks run in a small process pool of their own).
_CONCURRENCY = 16

_JSONL_SUFFIXES = (".jsonl", ".ndjson")


def verdict(status: str | None, correct: bool | None) -> str:
    """``correct``, ``wrong`` or ``unusable`` (any other status is returned as it is)."""
    if status == "scored":
        return "correct" if correct else "wrong"
    return str(status)


@dataclass(frozen=True, slots=True)
class ChangedItem:
    """One answer whose verdict is not the recorded one."""

    model: str
    suite: str
    item_id: str
    repeat: int
    before: str
    """The recorded verdict: ``correct``, ``wrong`` or ``unusable``."""
    after: str
    """Today's verdict."""
    extracted: str | None
    """The answer today's scorer extracted."""
    recorded_extracted: str | None
    reason: str | None
    """Why today's verdict is ``unusable`` (``empty``, ``truncated``, ``refused``)."""

    def as_dict(self) -> dict[str, Any]:
        """JSON-able form."""
        return {
            "model": self.model,
            "suite": self.suite,
            "item_id": self.item_id,
            "repeat": self.repeat,
            "before": self.before,
            "after": self.after,
            "extracted": self.extracted,
            "recorded_extracted": self.recorded_extracted,
            "reason": self.reason,
        }


@dataclass
class RescoreGroup:
    """Recorded and re-scored results of one model on one suite."""

    model: str
    suite: str
    items: int = 0
    """Item results (every status; repeats count separately)."""
    answers: int = 0
    """Item results with an answer (``scored`` or ``unusable``): the ones re-scored."""
    scored_before: int = 0
    correct_before: int = 0
    scored_after: int = 0
    correct_after: int = 0
    changed: int = 0
    prompt_mismatch: int = 0
    """Answers whose stored request differs from the prompt rendered today."""
    from_item_text: int = 0
    """Answers taken from ``item_results.answer_text`` (their call row stores no answer)."""
    outcomes_before: list[tuple[str, bool]] = field(default_factory=list, repr=False)
    outcomes_after: list[tuple[str, bool]] = field(default_factory=list, repr=False)

    @property
    def accuracy_before(self) -> float | None:
        """Accuracy as recorded (as ``show`` computes it: repeats averaged per item)."""
        ci = accuracy_ci(self.outcomes_before)
        return None if ci is None else ci.accuracy

    @property
    def accuracy_after(self) -> float | None:
        """Accuracy re-scored."""
        ci = accuracy_ci(self.outcomes_after)
        return None if ci is None else ci.accuracy

    def as_dict(self) -> dict[str, Any]:
        """JSON-able form."""
        return {
            "model": self.model,
            "suite": self.suite,
            "items": self.items,
            "answers": self.answers,
            "scored_before": self.scored_before,
            "correct_before": self.correct_before,
            "accuracy_before": self.accuracy_before,
            "scored_after": self.scored_after,
            "correct_after": self.correct_after,
            "accuracy_after": self.accuracy_after,
            "changed": self.changed,
            "prompt_mismatch": self.prompt_mismatch,
            "from_item_text": self.from_item_text,
        }


@dataclass
class RescoreResult:
    """What :func:`rescore_run` found."""

    run_id: str
    simulated: bool
    imported_from: str | None
    """The source run of an imported run."""
    groups: list[RescoreGroup]
    changed: list[ChangedItem]

    @property
    def total_changed(self) -> int:
        return len(self.changed)

    @property
    def total_prompt_mismatch(self) -> int:
        return sum(g.prompt_mismatch for g in self.groups)

    def as_dict(self) -> dict[str, Any]:
        """What ``tollbench rescore --json`` prints."""
        return {
            "run_id": self.run_id,
            "simulated": self.simulated,
            "imported_from": self.imported_from,
            "answers": sum(g.answers for g in self.groups),
            "changed": self.total_changed,
            "prompt_mismatch": self.total_prompt_mismatch,
            "results": [g.as_dict() for g in self.groups],
            "changed_items": [c.as_dict() for c in self.changed],
        }


@dataclass(frozen=True, slots=True)
class _Answer:
    """One stored answer to re-score."""

    model: str
    suite: str
    item_id: str
    repeat: int
    status: str
    correct: bool | None
    extracted: str | None
    text: str
    finish_reason: str
    prompt: Prompt
    from_item_text: bool
    prompt_mismatch: bool
    judge_text: str | None = None
    """For a judged suite (hle): the stored reply of the unit's last judge call, None if none."""


@dataclass
class RescoreJob:
    """A run's answers, each with its prompt rendered again, ready to score (see :func:`score_job`)."""

    run_id: str
    simulated: bool
    imported_from: str | None
    suites: dict[str, Suite]
    answers: list[_Answer]
    groups: dict[tuple[str, str], RescoreGroup]


def _json(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else value


def _stored_suites(run: Mapping[str, Any]) -> tuple[list[str | Suite], int, Path | None, dict[str, str]]:
    """Suite names, seed, data file and suite options the run was planned with."""
    config = dict(run.get("config") or {})
    stored = config.get("options")
    if isinstance(stored, Mapping) and "models" in stored:
        opts = options_from_config(stored)
        return list(opts.suites), opts.seed, opts.data, dict(opts.suite_options)
    # A run created before options were stored: its config still names the seed, data and options.
    data = config.get("data")
    return (
        list(run.get("suites") or []),
        int(config.get("seed") or 0),
        Path(data) if data else None,
        {str(k): str(v) for k, v in dict(config.get("suite_options") or {}).items()},
    )


def load_run_suites(
    run: Mapping[str, Any], *, data: Path | None = None, suites: Sequence[Suite] = ()
) -> tuple[dict[str, Suite], int]:
    """Load the suites of ``run`` (a runs row) the way it was planned, without models, prices or keys.

    Args:
        run: The run row.
        data: A data file to use instead of the stored one (``--data``), as ``run --data`` does; for
            a ``jsonl`` suite the suite keeps the name it had in the run.
        suites: Suite objects to use for suites that are not registered by name (tests).

    Returns:
        ``({suite name: suite}, seed)``.

    Raises:
        DataError: A suite's data cannot be loaded here; the message names the suite and the file and
            says to pass ``--data``.
        ConfigError: A suite that no longer exists, or stored options this version cannot read.
    """
    from suites import get_suite
    from suites import jsonl as jsonl_suite

    names, seed, stored_data, options = _stored_suites(run)
    given = {s.name: s for s in suites}
    loaded: dict[str, Suite] = {}
    for entry in names:
        if not isinstance(entry, str):
            loaded[entry.name] = entry
            continue
        if entry in given:
            loaded[entry] = given[entry]
            continue
        key = entry.strip()
        is_path = key.lower().endswith(_JSONL_SUFFIXES)
        suite: Suite
        try:
            if data is not None and (is_path or key.lower() == "jsonl"):
                # Keep the name the run recorded (jsonl:<stem of the file the run read>).
                original = Path(key) if is_path else (stored_data or data)
                suite = jsonl_suite.load(data, options, name=f"jsonl:{original.stem}")
            else:
                suite = get_suite(key, data=data or stored_data, options=options)
        except DataError as exc:
            used = f"; the run read {stored_data}" if stored_data and data is None else ""
            raise DataError(
                f"cannot load suite {key!r} to re-score run {run['id']}: {exc}{used}. "
                "Pass --data FILE with the suite's data (parquet, JSONL or CSV)"
            ) from None
        loaded[suite.name] = suite
    return loaded, seed


def _inferred_finish(reason: str | None) -> str:
    """The finish reason a recorded item reason implies (for answers stored without their call)."""
    return {"refused": "refusal", "truncated": "length"}.get(reason or "", "stop")


def _messages(prompt: Prompt) -> list[dict[str, Any]]:
    return [canonical_message(m) for m in prompt.messages]


def prepare_rescore(
    store: Store, run_id: str, *, data: Path | None = None, suites: Sequence[Suite] = ()
) -> RescoreJob:
    """Read a run's answers and render each one's prompt again (reads only; nothing is sent).

    Args:
        store: The open database.
        run_id: Any run, bought here or imported.
        data: The data file to load the suites from instead of the stored one (``--data``).
        suites: Suite objects for suites that are not registered by name (tests).

    Raises:
        ConfigError: No such run; a suite that is gone.
        DataError: A suite's data cannot be loaded, or it lacks items the run answered.
    """
    run = store.get_run(run_id)
    if run is None:
        raise ConfigError(f"no run {run_id!r} in {store.label} (see `tollbench runs`)")
    items = store.item_results(run_id)
    imported = dict(run.get("config") or {}).get("imported")
    imported_from = str(imported.get("from_run")) if isinstance(imported, Mapping) else None
    groups: dict[tuple[str, str], RescoreGroup] = {}
    for r in items:
        group = groups.setdefault((r["model"], r["suite"]), RescoreGroup(r["model"], r["suite"]))
        group.items += 1
    answered = [r for r in items if r["status"] in DONE_STATUSES]
    if not answered:
        return RescoreJob(run_id, bool(run["simulated"]), imported_from, {}, [], groups)
    loaded, seed = load_run_suites(run, data=data, suites=suites)
    needed = sorted({r["suite"] for r in answered})
    absent = [s for s in needed if s not in loaded]
    if absent:
        raise ConfigError(
            f"run {run_id} answered suite(s) {', '.join(absent)} but its stored options load "
            f"{', '.join(sorted(loaded)) or 'none'}"
        )
    by_id: dict[str, dict[str, Item]] = {name: {i.id: i for i in loaded[name].items} for name in needed}
    missing = sorted(
        {(r["suite"], str(r["item_id"])) for r in answered}
        - {(name, item_id) for name, items_of in by_id.items() for item_id in items_of}
    )
    if missing:
        suite_name, first = missing[0]
        lacking = sum(1 for s, _ in missing if s == suite_name)
        raise DataError(
            f"suite {suite_name} as loaded here lacks {lacking} item(s) run {run_id} answered "
            f"(first {first!r}): it is not the data the run used. Pass --data FILE with the run's data"
        )
    call_ids = sorted({str(r["final_call_id"]) for r in answered if r["final_call_id"]})
    calls: dict[str, Any] = {}
    c = calls_table
    with store.begin_read("reading a run's answers") as conn:
        for i in range(0, len(call_ids), 500):
            stmt = sa.select(c.c.id, c.c.response, c.c.request).where(
                c.c.run_id == run_id, c.c.id.in_(call_ids[i : i + 500])
            )
            for row in conn.execute(stmt):
                calls[row.id] = row
    judge_replies = (
        _judge_replies(store, run_id) if any(isinstance(loaded[name], JudgedSuite) for name in needed) else {}
    )
    answers: list[_Answer] = []
    for r in answered:
        suite = loaded[r["suite"]]
        prompt = suite.render(by_id[r["suite"]][str(r["item_id"])], int(r["repeat"]), seed)
        call = calls.get(str(r["final_call_id"])) if r["final_call_id"] else None
        response = _json(call.response) if call is not None else None
        if isinstance(response, Mapping) and isinstance(response.get("text"), str):
            text, finish, from_item = response["text"], str(response.get("finish_reason") or "other"), False
        else:
            text, finish, from_item = str(r["answer_text"] or ""), _inferred_finish(r["reason"]), True
        request = _json(call.request) if call is not None else None
        mismatch = isinstance(request, Mapping) and request.get("messages") != _messages(prompt)
        answers.append(
            _Answer(
                model=r["model"],
                suite=r["suite"],
                item_id=str(r["item_id"]),
                repeat=int(r["repeat"]),
                status=str(r["status"]),
                correct=r["correct"],
                extracted=r["extracted"],
                text=text,
                finish_reason=finish,
                prompt=prompt,
                from_item_text=from_item,
                prompt_mismatch=mismatch,
                judge_text=judge_replies.get((r["model"], r["suite"], str(r["item_id"]), int(r["repeat"]))),
            )
        )
    return RescoreJob(run_id, bool(run["simulated"]), imported_from, loaded, answers, groups)


def _judge_replies(store: Store, run_id: str) -> dict[tuple[str, str, str, int], str]:
    """Per unit, the text of its last answered judge call (role ``judge``, bought or cached)."""
    c = calls_table
    stmt = (
        sa.select(c.c.model, c.c.suite, c.c.item_id, c.c.repeat, c.c.response)
        .where(c.c.run_id == run_id, c.c.role == "judge", c.c.response.is_not(None))
        .order_by(c.c.started_at, c.c.id)
    )
    out: dict[tuple[str, str, str, int], str] = {}
    with store.begin_read("reading a run's judge replies") as conn:
        for row in conn.execute(stmt):
            response = _json(row.response)
            if isinstance(response, Mapping) and isinstance(response.get("text"), str):
                out[(row.model, row.suite, str(row.item_id), int(row.repeat))] = response["text"]
    return out


async def score_job(job: RescoreJob) -> RescoreResult:
    """Score every answer of a prepared job with :func:`score_answer` and compare with the record."""
    scores: list[Score | None] = [None] * len(job.answers)
    limiter = anyio.CapacityLimiter(_CONCURRENCY)

    async def one(index: int, answer: _Answer) -> None:
        suite = job.suites[answer.suite]
        async with limiter:
            if isinstance(suite, JudgedSuite) and answer.text.strip() and answer.finish_reason != "refusal":
                # Judged again from the stored judge reply: rescore sends nothing, not even to the judge.
                scores[index] = suite.judged_score(answer.prompt, answer.text, answer.judge_text)
            else:
                scores[index] = await score_answer(suite, answer.prompt, answer.text, answer.finish_reason)

    async with anyio.create_task_group() as tg:
        for index, answer in enumerate(job.answers):
            tg.start_soon(one, index, answer)
    changed: list[ChangedItem] = []
    for answer, score in zip(job.answers, scores, strict=True):
        assert score is not None
        group = job.groups[(answer.model, answer.suite)]
        group.answers += 1
        group.prompt_mismatch += int(answer.prompt_mismatch)
        group.from_item_text += int(answer.from_item_text)
        if answer.status == "scored":
            group.scored_before += 1
            group.correct_before += int(bool(answer.correct))
            group.outcomes_before.append((answer.item_id, bool(answer.correct)))
        if score.status == "scored":
            group.scored_after += 1
            group.correct_after += int(bool(score.correct))
            group.outcomes_after.append((answer.item_id, bool(score.correct)))
        before = verdict(answer.status, answer.correct)
        after = verdict(score.status, score.correct)
        if before != after:
            group.changed += 1
            changed.append(
                ChangedItem(
                    model=answer.model,
                    suite=answer.suite,
                    item_id=answer.item_id,
                    repeat=answer.repeat,
                    before=before,
                    after=after,
                    extracted=score.extracted,
                    recorded_extracted=answer.extracted,
                    reason=score.reason,
                )
            )
    return RescoreResult(
        run_id=job.run_id,
        simulated=job.simulated,
        imported_from=job.imported_from,
        groups=[job.groups[k] for k in sorted(job.groups)],
        changed=changed,
    )


def rescore_run(
    store: Store, run_id: str, *, data: Path | None = None, suites: Sequence[Suite] = ()
) -> RescoreResult:
    """Re-score run ``run_id``'s stored answers with today's scorers, from synchronous code.

    Nothing is sent, paid or written. See :func:`prepare_rescore` for the arguments and errors.
    """
    job = prepare_rescore(store, run_id, data=data, suites=suites)

    async def go() -> RescoreResult:
        return await score_job(job)

    return anyio.run(go)
