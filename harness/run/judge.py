"""Judge calls: the LLM judge of a judged suite (``hle``) is called like the model itself.

A judge call goes through the same path as the model's own calls (docs/design.md invariants 1, 5,
11): the response cache first (an identical judge request already bought is reused at cost 0, a
``cached`` call row), else, under the model's budget share and its provider's slot, a durable
:class:`~harness.run.attempt.Reservation` at the judge's worst case before the request leaves, one
settlement on every exit path, the runner's retry policy. Its call rows have role ``judge`` (model =
the model whose answer is judged, provider model = the judge), so reports show target and judge
dollars apart and the judge's spend counts against the same budget and share.

When the budget stops the run before the judge could be called, the answer is recorded ``not_run``
(reason: the stop), never scored: ``resume`` finds the bought answer and judges it then. A judge
that fails after its retries makes the item ``unscored``.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import anyio
import anyio.to_thread

from harness.budget.ledger import CachedCall, CallStart
from harness.errors import BudgetExhausted, CallTimeout, ProviderError, RateLimited, ShareExhausted
from harness.pricing.money import usd_to_nano
from harness.run.attempt import Reservation, one_line, provider_cost_nano
from harness.run.cache import canonical_request, find_cached, request_key, response_record
from harness.run.plan import JudgePlan, ModelPlan, Unit
from harness.run.retry import retrying
from harness.suite import JudgedSuite, Score
from harness.types import Adapter, Completion, Prompt, Request, RetryDecision

if TYPE_CHECKING:
    from harness.run.runner import Runner

__all__ = ["JUDGE_ROLE", "judge_answer", "judge_request"]

JUDGE_ROLE = "judge"


def judge_request(jp: JudgePlan, suite: JudgedSuite, prompt: Prompt, text: str) -> tuple[Request, int]:
    """The judge's request for one answer and the bytes of its response schema (which the
    provider adds to the prompt, so the reservation counts them)."""
    jr = suite.judge_request(prompt, text)
    request = Request(
        model=jp.spec.model,
        messages=jr.messages,
        max_output_tokens=min(jr.max_output_tokens, jp.max_output_tokens),
        reasoning_effort=jp.spec.reasoning_effort,
        temperature=jp.spec.temperature,
        extra_body={"response_format": dict(jr.response_format)},
    )
    return request, len(json.dumps(jr.response_format).encode("utf-8"))


async def judge_answer(
    runner: Runner, mp: ModelPlan, unit: Unit, prompt: Prompt, text: str, costs: list[int]
) -> Score | None:
    """Judge one answer; the judge's cost is appended to ``costs`` (the item's cost).

    Returns:
        The score, or None when the budget stopped the run first (the item is then recorded
        ``not_run`` here, its answer kept for ``resume``).
    """
    jp = runner.plan.judge
    suite = runner.plan.suites[unit.suite]
    assert jp is not None and isinstance(suite, JudgedSuite)
    spec = jp.spec
    request, schema_bytes = judge_request(jp, suite, prompt, text)
    canonical = canonical_request(
        spec, request, repeat=unit.repeat, run_seed=runner.plan.options.seed, endpoint=runner.endpoint(spec)
    )
    rkey = request_key(canonical)
    ledger = runner.state.ledger
    assert ledger is not None
    if runner.plan.options.use_cache:
        found = await anyio.to_thread.run_sync(find_cached, runner.store, [rkey])
        hit = found.get(rkey)
        if hit is not None:
            start = _call_start(runner, jp, unit, 0, 0, canonical, rkey)
            await ledger.record_cached(
                CachedCall(
                    start=replace(start, sent_to=None),
                    source_call_id=hit.call_id,
                    reproduce_nano=hit.cost_nano,
                    response=response_record(hit.text, hit.finish_reason),
                    finish_reason=hit.raw_finish_reason,
                )
            )
            return suite.judged_score(prompt, text, hit.text)
    adapter = runner.judge_adapter()
    upper = adapter.input_tokens_upper_bound(request) + schema_bytes
    reserve_nano = usd_to_nano(jp.price.worst_case(upper, request.max_output_tokens))

    def bound_charge(output_bound: int) -> int:  # as for the model's own calls (runner._process)
        return usd_to_nano(jp.price.worst_case(upper, max(request.max_output_tokens, output_bound)))

    completion: Completion | None = None
    try:
        async for attempt in retrying(runner.plan.options.retry):
            with attempt:
                completion = await _attempt(
                    runner, jp, unit, request, adapter, reserve_nano, attempt.retry_state.attempt_number,
                    costs, canonical, rkey, bound_charge,
                )  # fmt: skip
    except BudgetExhausted as stop:
        if isinstance(stop, ShareExhausted):
            runner.stop_model_at_share(unit.model, str(stop))
        why = runner.state.stop_of(unit.model)
        reason = why.reason.value if why is not None else "budget_exhausted"
        await runner.record_unjudged(unit, prompt, text, reason, costs)
        return None
    except ProviderError:
        return suite.judged_score(prompt, text, None)
    assert completion is not None
    return suite.judged_score(prompt, text, completion.text)


def _call_start(
    runner: Runner,
    jp: JudgePlan,
    unit: Unit,
    attempt: int,
    reserve_nano: int,
    canonical: dict[str, object],
    rkey: str,
) -> CallStart:
    spec = jp.spec
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
        attempt=attempt,
        role=JUDGE_ROLE,
        reserved_nano=reserve_nano,
        price_id=jp.price.id,
        started_at=datetime.now(UTC),
        request_hash=rkey,
        request=canonical,
        sent_to=runner.sent_to,
    )


async def _attempt(
    runner: Runner,
    jp: JudgePlan,
    unit: Unit,
    request: Request,
    adapter: Adapter,
    reserve_nano: int,
    attempt_number: int,
    costs: list[int],
    canonical: dict[str, object],
    rkey: str,
    bound_charge: Callable[[int], int],
) -> Completion:
    """One judge attempt: the model's share, the judge provider's slot, a durable reservation."""
    gate = runner.gate
    assert gate is not None
    limiter = runner.limiter_for(jp.spec.provider)
    timeout_s = runner.plan.options.attempt_timeout_s
    async with runner.share_hold(unit.model, reserve_nano) as hold, limiter.slot():
        start = _call_start(runner, jp, unit, attempt_number, reserve_nano, canonical, rkey)
        request = replace(
            request, extra_headers={**request.extra_headers, "x-client-request-id": start.call_id}
        )

        def settled(cost_nano: int) -> None:
            costs.append(cost_nano)
            if runner.state.projection is not None:
                runner.state.projection.call_settled(cost_nano)

        try:
            async with Reservation(
                gate, start, hold=hold, on_settled=settled, bound_charge=bound_charge
            ) as reservation:
                await runner.lease_holds(unit)
                runner.state.calls += 1
                try:
                    with anyio.fail_after(timeout_s):
                        completion = await adapter.complete(request)
                except TimeoutError:
                    raise CallTimeout(
                        f"judge attempt exceeded {timeout_s:g}s",
                        provider=jp.spec.provider,
                        retry=RetryDecision.transient(),
                        error_type="attempt_timeout",
                        generation_started=True,
                    ) from None
                reported = provider_cost_nano(completion.provider_cost_usd)
                if completion.usage_known:
                    price = jp.price.cost(completion.usage, service_tier=completion.service_tier)
                    reservation.answered(completion, usd_to_nano(price), provider_cost_nano=reported)
                else:  # usage unknown: its worst case for what was seen
                    charge = max(reserve_nano, bound_charge(completion.output_bound))
                    reservation.answered(completion, charge, provider_cost_nano=reported)
        except ProviderError as exc:
            kind = exc.error_type or type(exc).__name__
            runner.state.errors[(f"judge {jp.spec.name}", kind, one_line(exc.message)[:200])] += 1
            if isinstance(exc, RateLimited):
                limiter.on_rate_limited(exc.retry.retry_after_s)
            raise
        limiter.on_success(completion.rate_limits)
        return completion
