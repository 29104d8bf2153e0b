"""The response cache: answers already paid for, found again by the exact request that bought them.

Every call row stores its *canonical request* (provider, API, the model id sent on the wire, the
messages and every generation parameter, plus the repeat index and the run's seed) and its SHA-256,
``calls.request_hash``. Before reserving a call the runner looks the hash up across every run in the
same database; a hit re-scores the stored answer instead of buying it again (docs/design.md invariant 2).

What is in the key, and why:

- ``provider``, ``api``, ``model`` (the provider's id), ``messages``: the request itself (an image by
  its media type and the SHA-256 of its bytes);
- ``max_output_tokens``, ``reasoning_effort``, ``thinking_budget``, ``temperature``, ``seed``,
  ``extra_body``: every parameter that can change the answer (a longer limit may not truncate);
- ``repeat``: repeat *k* of an item is a separate sample, never the same answer as repeat *j*;
- ``run_seed``: the run's ``--seed``. A new seed is a request for a new sample (with temperature > 0
  the same request can answer differently), so it misses;
- ``endpoint``: ``simulator`` for simulated runs, else the configured base URL (or ``default``): a
  simulated answer must never stand in for a real one (invariant 7), nor a local server's for the API's.

Only settled ``ok`` calls with a stored answer are served, never ``cached`` rows themselves (so the
cost to reproduce always points at the call that was paid for), and never calls of imported runs
(imported rows carry no ``request_hash``): a bundle from elsewhere is not proof of an answer bought here.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from harness.store.engine import Store, calls_table
from harness.types import Message, ModelSpec, Request, UnitKey

__all__ = [
    "CachedAnswer",
    "answers_of_run",
    "canonical_message",
    "canonical_request",
    "find_cached",
    "request_key",
    "response_record",
]


@dataclass(frozen=True, slots=True)
class CachedAnswer:
    """An answer stored on a settled ``ok`` call row."""

    call_id: str
    run_id: str
    text: str
    finish_reason: str
    """Normalised (``stop``, ``length``, ``refusal``, ``other``), what scoring needs."""
    raw_finish_reason: str | None
    cost_nano: int
    """What the call that bought the answer cost (the cost to reproduce)."""


def canonical_message(m: Message) -> dict[str, Any]:
    """A message in the key; its images by media type and SHA-256 of their bytes (a text-only
    message keeps the key it always had)."""
    out: dict[str, Any] = {"role": m.role, "content": m.content}
    if m.images:
        out["images"] = [f"{image.media_type};sha256={image.sha256}" for image in m.images]
    return out


def canonical_request(
    spec: ModelSpec, request: Request, *, repeat: int, run_seed: int, endpoint: str
) -> dict[str, Any]:
    """The request as stored and hashed: JSON-ready, no key, no transport details.

    Args:
        spec: The model (provider and API come from it).
        request: What the adapter sends (its ``extra_headers`` are transport, not part of the key).
        repeat: The repeat index of the unit.
        run_seed: The run's ``--seed``.
        endpoint: ``simulator``, or the base URL the request goes to (``default`` for the API's own).
    """
    return {
        "provider": spec.provider,
        "api": spec.api,
        "model": request.model,
        "messages": [canonical_message(m) for m in request.messages],
        "max_output_tokens": request.max_output_tokens,
        "reasoning_effort": request.reasoning_effort,
        "thinking_budget": request.thinking_budget,
        "temperature": request.temperature,
        "seed": request.seed,
        "extra_body": _plain(request.extra_body),
        "repeat": repeat,
        "run_seed": run_seed,
        "endpoint": endpoint,
    }


def request_key(canonical: Mapping[str, Any]) -> str:
    """SHA-256 (hex) of the canonical JSON of a request (sorted keys, no spaces, UTF-8)."""
    text = json.dumps(canonical, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def response_record(text: str, finish_reason: str) -> dict[str, str]:
    """What a call row keeps of its answer (``calls.response``)."""
    return {"text": text, "finish_reason": finish_reason}


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def _answer(row: Any) -> CachedAnswer | None:
    response = row.response
    if isinstance(response, str):
        response = json.loads(response)
    if not isinstance(response, Mapping) or not isinstance(response.get("text"), str):
        return None
    return CachedAnswer(
        call_id=row.id,
        run_id=row.run_id,
        text=response["text"],
        finish_reason=str(response.get("finish_reason") or "other"),
        raw_finish_reason=row.finish_reason,
        cost_nano=int(row.cost_nano or 0),
    )


_COLUMNS = (
    calls_table.c.id,
    calls_table.c.run_id,
    calls_table.c.request_hash,
    calls_table.c.response,
    calls_table.c.finish_reason,
    calls_table.c.cost_nano,
)


def find_cached(store: Store, keys: Iterable[str]) -> dict[str, CachedAnswer]:
    """The first answer bought for each request key, across every run in ``store``.

    Returns:
        ``{request_key: answer}`` for the keys that have one (earliest call first).
    """
    wanted = sorted(set(keys))
    found: dict[str, CachedAnswer] = {}
    c = calls_table
    with store.begin_read("looking up the response cache") as conn:
        for i in range(0, len(wanted), 500):
            stmt = (
                sa.select(*_COLUMNS)
                .where(
                    c.c.request_hash.in_(wanted[i : i + 500]),
                    c.c.status == "ok",
                    c.c.cached.is_(False),
                    c.c.response.is_not(None),
                )
                .order_by(c.c.started_at, c.c.id)
            )
            for row in conn.execute(stmt):
                if row.request_hash not in found:
                    answer = _answer(row)
                    if answer is not None:
                        found[row.request_hash] = answer
    return found


def answers_of_run(store: Store, run_id: str) -> dict[UnitKey, CachedAnswer]:
    """For each unit of a run, the last answer the run itself bought (``ok`` calls with an answer).

    Resume uses it to recover answers paid for but never recorded as an item result (a crash between
    the settle and the item result): they are re-scored, not bought again, whatever ``--no-cache`` says.
    """
    c = calls_table
    stmt = (
        sa.select(*_COLUMNS, c.c.model, c.c.suite, c.c.item_id, c.c.repeat)
        .where(
            c.c.run_id == run_id,
            c.c.status == "ok",
            c.c.cached.is_(False),
            c.c.response.is_not(None),
            c.c.role == "target",  # a judge's answer (harness.run.judge) is not the unit's answer
        )
        .order_by(c.c.started_at, c.c.id)
    )
    out: dict[UnitKey, CachedAnswer] = {}
    with store.begin_read("reading a run's answers") as conn:
        for row in conn.execute(stmt):
            answer = _answer(row)
            if answer is not None:
                out[(row.model, row.suite, row.item_id, int(row.repeat))] = answer
    return out
