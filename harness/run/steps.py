"""Stepped units: a suite whose unit is a chain of calls (``scicode``: a problem's sub-steps).

Each step's prompt holds the model's answers to the earlier steps
(:meth:`~harness.suite.SteppedSuite.step_prompt`), so the steps of a unit go one after another; units
still run side by side. Every step is a call like the model's own (docs/design.md invariants 1, 2, 5,
11), on the runner's attempt path with role ``step``: the answer this run already bought for that
exact request first (resume after a crash mid-problem never pays a step twice, whatever
``--no-cache`` says), then the response cache (a hit is a ``cached`` call row at cost 0), else,
under the model's budget share and its provider's slot, a durable
:class:`~harness.run.attempt.Reservation` at the step's worst case before the request leaves, one
settlement on every exit path, the runner's retry policy. When every step is answered the suite
scores the chain (:meth:`~harness.suite.SteppedSuite.stepped_score`) and the unit's item result
carries the whole chain's cost.

A budget stop before a step leaves the unit ``not_run`` (its steps so far kept: ``resume`` goes on
from the first step not bought); a step that fails after its retries ends the unit as ``error``.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import anyio
import anyio.to_thread
import sqlalchemy as sa

from harness.budget.ledger import CachedCall, CallStart
from harness.errors import AuthError, BadRequest, BudgetExhausted, ProviderError, ShareExhausted
from harness.pricing.money import usd_to_nano
from harness.run.attempt import one_line
from harness.run.cache import CachedAnswer, find_cached, response_record
from harness.run.plan import ModelPlan, Unit
from harness.run.retry import retrying
from harness.store.engine import Store, calls_table
from harness.suite import STEP_SEPARATOR, StepAnswer, SteppedSuite
from harness.types import Completion, Prompt

if TYPE_CHECKING:
    from harness.run.runner import Runner

__all__ = ["STEP_ROLE", "run_steps", "step_answers_of_run"]

STEP_ROLE = "step"


def step_answers_of_run(store: Store, run_id: str, unit: Unit) -> dict[str, CachedAnswer]:
    """The step answers ``run_id`` itself bought for ``unit``, by request key."""
    c = calls_table
    stmt = (
        sa.select(c.c.id, c.c.request_hash, c.c.response, c.c.finish_reason, c.c.cost_nano)
        .where(
            c.c.run_id == run_id,
            c.c.model == unit.model,
            c.c.suite == unit.suite,
            c.c.item_id == unit.item.id,
            c.c.repeat == unit.repeat,
            c.c.role == STEP_ROLE,
            c.c.status == "ok",
            c.c.cached.is_(False),
            c.c.response.is_not(None),
        )
        .order_by(c.c.started_at, c.c.id)
    )
    out: dict[str, CachedAnswer] = {}
    with store.begin_read("reading a unit's step answers") as conn:
        for row in conn.execute(stmt):
            response = json.loads(row.response) if isinstance(row.response, str) else row.response
            if not row.request_hash or not isinstance(response, dict):
                continue
            if not isinstance(response.get("text"), str):
                continue
            out[str(row.request_hash)] = CachedAnswer(
                call_id=row.id,
                run_id=run_id,
                text=response["text"],
                finish_reason=str(response.get("finish_reason") or "other"),
                raw_finish_reason=row.finish_reason,
                cost_nano=int(row.cost_nano or 0),
            )
    return out


async def run_steps(runner: Runner, mp: ModelPlan, unit: Unit) -> None:
    """Answer every step of a stepped unit in order, then score and record it."""
    suite = runner.plan.suites[unit.suite]
    assert isinstance(suite, SteppedSuite)
    prompt = runner.prompt_for(unit)
    n = suite.step_count(prompt)
    own = await anyio.to_thread.run_sync(step_answers_of_run, runner.store, runner.run_id, unit)
    answers: list[StepAnswer] = []
    costs: list[int] = []
    last_call: list[str] = []
    progress = runner.state.per_model[mp.spec.name]
    for k in range(n):
        step_prompt = suite.step_prompt(prompt, k, [a.text for a in answers])
        try:
            answer = await _answer_step(runner, mp, unit, step_prompt, own, costs, last_call)
        except BudgetExhausted as stop:
            if isinstance(stop, ShareExhausted):
                runner.stop_model_at_share(unit.model, str(stop))
            why = runner.state.stop_of(unit.model)
            reason = why.reason.value if why is not None else "budget_exhausted"
            if costs:  # steps were paid for in this session: the unit is recorded with their spend
                await runner.record_unit(unit, prompt, "not_run", reason, costs, last_call)
            return  # otherwise recorded as not run at the end; resume goes on from this step
        except ProviderError as exc:
            progress.errors += 1
            progress.done += 1
            if isinstance(exc, AuthError) or (isinstance(exc, BadRequest) and exc.status_code == 404):
                detail = f"{exc.error_type or type(exc).__name__}: {one_line(exc.message)}"
                runner.stop_model_unavailable(unit.model, detail)
            kind = exc.error_type or type(exc).__name__
            await runner.record_unit(unit, prompt, "error", kind, costs, last_call)
            return
        answers.append(answer)
    score = await suite.stepped_score(prompt, answers)
    meta = {k: v for k, v in prompt.meta.items() if k != "step"}
    text = STEP_SEPARATOR.join(a.text for a in answers)
    # No final call: the unit's answer is its whole chain (answer_text), which rescore scores again.
    await runner.finish_scored(mp, unit, replace(prompt, meta=meta), score, text, costs, [])


async def _answer_step(
    runner: Runner,
    mp: ModelPlan,
    unit: Unit,
    prompt: Prompt,
    own: dict[str, CachedAnswer],
    costs: list[int],
    last_call: list[str],
) -> StepAnswer:
    request, canonical, rkey = runner.request_for(mp, unit, prompt)
    bought = own.get(rkey)
    if bought is not None:  # this run paid for it before a crash: never again
        last_call[:] = [bought.call_id]
        return StepAnswer(bought.text, bought.finish_reason)
    ledger = runner.state.ledger
    assert ledger is not None
    if runner.plan.options.use_cache:
        found = await anyio.to_thread.run_sync(find_cached, runner.store, [rkey])
        hit = found.get(rkey)
        if hit is not None:
            start = _call_start(runner, mp, unit, canonical, rkey)
            await ledger.record_cached(
                CachedCall(
                    start=start,
                    source_call_id=hit.call_id,
                    reproduce_nano=hit.cost_nano,
                    response=response_record(hit.text, hit.finish_reason),
                    finish_reason=hit.raw_finish_reason,
                )
            )
            last_call[:] = [start.call_id]
            return StepAnswer(hit.text, hit.finish_reason)
    adapter = runner.adapter_for(mp.spec.name)
    input_bound = adapter.input_tokens_upper_bound(request)
    reserve_nano = usd_to_nano(mp.price.worst_case(input_bound, mp.max_output_tokens))

    def bound_charge(output_bound: int) -> int:  # as for the model's own calls (runner._process)
        return usd_to_nano(mp.price.worst_case(input_bound, max(mp.max_output_tokens, output_bound)))

    completion: Completion | None = None
    async for attempt in retrying(runner.plan.options.retry):
        with attempt:
            completion = await runner.step_attempt(
                mp, unit, request, reserve_nano, attempt.retry_state.attempt_number, costs, last_call,
                canonical, rkey, bound_charge,
            )  # fmt: skip
    assert completion is not None
    return StepAnswer(completion.text, completion.finish_reason)


def _call_start(
    runner: Runner, mp: ModelPlan, unit: Unit, canonical: dict[str, object], rkey: str
) -> CallStart:
    """A ``cached`` call row for a step answered from the response cache (cost 0)."""
    spec = mp.spec
    return CallStart(
        call_id=uuid.uuid4().hex,
        run_id=runner.run_id,
        model=unit.model,
        provider=spec.provider,
        api=spec.api,
        provider_model=spec.model,
        suite=unit.suite,
        item_id=unit.item.id,
        repeat=unit.repeat,
        attempt=0,
        role=STEP_ROLE,
        reserved_nano=0,
        price_id=mp.price.id,
        started_at=datetime.now(UTC),
        request_hash=rkey,
        request=canonical,
        sent_to=None,
    )
