"""OpenAI wire shapes: Chat Completions and Responses bodies and streams (PROTOCOLS.md §2, §3).

Shapes follow the transcripts in ``docs/transcripts/`` key for key. Streams are pre-rendered into
:class:`~harness.sim.streaming.Rendered` objects; the JSON around each text delta is built once per
request and only the delta is encoded per event.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from harness.sim.generate import CachePlan, OutputPlan
from harness.sim.invoice import usage_from_openai
from harness.sim.profiles import ModelProfile
from harness.sim.streaming import Rendered

__all__ = ["ChatParams", "ResponsesParams", "chat_body", "chat_stream", "responses_body", "responses_stream"]

_OBF = ("Xk2", "q", "aB", "9Zt", "M", "k3", "Zq9", "pQ", "w7Lm", "e")


def _dumps(obj: Any) -> str:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False)


def _split(text: str, chunk_chars: int) -> list[str]:
    return [text[i : i + chunk_chars] for i in range(0, len(text), chunk_chars)] if text else []


def _cumulative(pieces: list[str], base: int, cap: int) -> list[int]:
    out: list[int] = []
    nbytes = 0
    for p in pieces:
        nbytes += len(p.encode("utf-8"))
        out.append(base + min(cap, (nbytes + 3) // 4))
    return out


# --------------------------------------------------------------------------------------------------
# Chat Completions


@dataclass(frozen=True, slots=True)
class ChatParams:
    """Per-request values the chat renderers need."""

    body_id: str
    created: int
    fingerprint: str
    include_usage: bool
    include_obfuscation: bool
    dialect: str = "openai"
    """``openai`` or an OpenAI-compatible provider's (``deepseek``, ``xai``, ``openrouter``, ``together``)."""
    cost_usd: Decimal | None = None
    """What the request costs (for the providers that report their own cost: xAI, OpenRouter)."""
    byok: bool = False
    """OpenRouter bring-your-own-key: ``cost`` is OpenRouter's 5% fee, the rest is upstream."""


#: OpenRouter's fee on bring-your-own-key routes (a share of the upstream cost).
BYOK_FEE = Decimal("0.05")


def chat_usage(plan: OutputPlan, cache: CachePlan, p: ChatParams | None = None) -> dict[str, Any]:
    """The chat ``usage`` object in the request's dialect (OpenAI's: cached inside prompt, reasoning
    inside completion; the others as PROTOCOLS.md section 12 describes them)."""
    dialect = p.dialect if p is not None else "openai"
    usage = _openai_usage(plan, cache)
    if dialect == "deepseek":
        # Top-level cache split, no prompt_tokens_details; reasoning inside completion_tokens.
        del usage["prompt_tokens_details"]
        usage["prompt_cache_hit_tokens"] = cache.cache_read
        usage["prompt_cache_miss_tokens"] = cache.prompt - cache.cache_read
        usage["completion_tokens_details"] = {"reasoning_tokens": plan.reasoning}
    elif dialect == "xai":
        # Reasoning reported outside completion_tokens: prompt + completion + reasoning == total.
        usage["completion_tokens"] = plan.visible
        usage["total_tokens"] = cache.prompt + plan.visible + plan.reasoning
        if p is not None and p.cost_usd is not None:
            usage["cost_in_usd_ticks"] = int(p.cost_usd * 10**10)
    elif dialect == "openrouter" and p is not None and p.cost_usd is not None:
        if p.byok:
            usage["cost"] = float(p.cost_usd * BYOK_FEE)
            usage["is_byok"] = True
            usage["cost_details"] = {"upstream_inference_cost": float(p.cost_usd)}
        else:
            usage["cost"] = float(p.cost_usd)
            usage["is_byok"] = False
            usage["cost_details"] = {"upstream_inference_cost": None}
    return usage


def _openai_usage(plan: OutputPlan, cache: CachePlan) -> dict[str, Any]:
    return {
        "prompt_tokens": cache.prompt,
        "completion_tokens": plan.output,
        "total_tokens": cache.prompt + plan.output,
        "prompt_tokens_details": {"cached_tokens": cache.cache_read, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": plan.reasoning,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }


def chat_body(profile: ModelProfile, plan: OutputPlan, cache: CachePlan, p: ChatParams) -> dict[str, Any]:
    """A non-streaming ``chat.completion``."""
    return {
        "id": p.body_id,
        "object": "chat.completion",
        "created": p.created,
        "model": profile.response_model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": plan.text, "refusal": None, "annotations": []},
                "logprobs": None,
                "finish_reason": plan.finish,
            }
        ],
        "usage": chat_usage(plan, cache, p),
        "service_tier": "default",
        "system_fingerprint": p.fingerprint,
    }


def chat_stream(profile: ModelProfile, plan: OutputPlan, cache: CachePlan, p: ChatParams) -> Rendered:
    """A chat stream: role chunk, content chunks, finish chunk, [usage chunk], ``[DONE]``."""
    head = (
        f'data: {{"id":"{p.body_id}","object":"chat.completion.chunk","created":{p.created},'
        f'"model":{_dumps(profile.response_model)},"service_tier":"default",'
        f'"system_fingerprint":"{p.fingerprint}","choices":'
    )
    usage_null = ',"usage":null' if p.include_usage else ""
    reasoning_key = "reasoning" if p.dialect == "openrouter" else "reasoning_content"
    n_obf = 0

    def tail() -> str:
        nonlocal n_obf
        if not p.include_obfuscation:
            return "}\n\n"
        n_obf += 1
        return f',"obfuscation":"{_OBF[n_obf % len(_OBF)]}"}}\n\n'

    def choice(delta: str, finish: str | None) -> str:
        fr = "null" if finish is None else f'"{finish}"'
        return f'[{{"index":0,"delta":{delta},"logprobs":null,"finish_reason":{fr}}}]'

    events: list[bytes] = []
    tokens: list[int] = []
    events.append(
        (
            head + choice('{"role":"assistant","content":"","refusal":null}', None) + usage_null + tail()
        ).encode()
    )
    if p.dialect != "openai" and plan.thinking_text:
        # DeepSeek, xAI, Together: reasoning_content deltas; OpenRouter: reasoning (OpenAI sends none).
        tokens.append(0)
        thoughts = _split(plan.thinking_text, 4 * profile.thinking_chunk_tokens)
        for piece, cum in zip(thoughts, _cumulative(thoughts, 0, plan.reasoning), strict=True):
            delta = '{"content":null,"' + reasoning_key + '":' + _dumps(piece) + "}"
            events.append((head + choice(delta, None) + usage_null + tail()).encode())
            tokens.append(cum)
    else:
        tokens.append(plan.reasoning)
    pieces = _split(plan.text, 4 * profile.chunk_tokens)
    for piece, cum in zip(pieces, _cumulative(pieces, plan.reasoning, plan.visible), strict=True):
        events.append(
            (head + choice('{"content":' + _dumps(piece) + "}", None) + usage_null + tail()).encode()
        )
        tokens.append(cum)
    final_index = len(events)
    events.append((head + choice("{}", plan.finish) + usage_null + tail()).encode())
    tokens.append(plan.output)
    raw = chat_usage(plan, cache, p)
    if p.include_usage:
        events.append((head + '[],"usage":' + _dumps(raw) + tail()).encode())
        tokens.append(plan.output)
    events.append(b"data: [DONE]\n\n")
    tokens.append(plan.output)

    def error_event(_n: int) -> bytes:
        err = {
            "error": {
                "message": "The server had an error while processing your request. Sorry about that!",
                "type": "server_error",
                "param": None,
                "code": None,
            }
        }
        return f"data: {_dumps(err)}\n\n".encode()

    def malformed(_n: int) -> bytes:
        return (head + '[{"index":0,"delta":{"content":"tru\n\n').encode()

    return Rendered(
        events,
        tokens,
        final_index,
        raw,
        usage_from_openai(_openai_usage(plan, cache)),  # what is billed, whatever the dialect says
        "incomplete" if plan.finish == "length" else "completed",
        plan.reasoning,
        error_event,
        malformed,
    )


# --------------------------------------------------------------------------------------------------
# Responses


@dataclass(frozen=True, slots=True)
class ResponsesParams:
    """Per-request values the Responses renderers need (echoed request fields included)."""

    body_id: str
    created: int
    reasoning_id: str
    message_id: str
    max_output_tokens: int | None
    effort: str | None
    instructions: str | None
    store: bool
    temperature: float
    top_p: float
    metadata: dict[str, Any]
    include_obfuscation: bool


def responses_usage(plan: OutputPlan, cache: CachePlan) -> dict[str, Any]:
    """The Responses ``usage`` object."""
    return {
        "input_tokens": cache.prompt,
        "input_tokens_details": {"cached_tokens": cache.cache_read, "cache_write_tokens": 0},
        "output_tokens": plan.output,
        "output_tokens_details": {"reasoning_tokens": plan.reasoning},
        "total_tokens": cache.prompt + plan.output,
    }


def _response_obj(profile: ModelProfile, p: ResponsesParams) -> dict[str, Any]:
    return {
        "id": p.body_id,
        "object": "response",
        "created_at": p.created,
        "model": profile.response_model,
        "parallel_tool_calls": True,
        "tool_choice": "auto",
        "tools": [],
        "max_output_tokens": p.max_output_tokens,
        "reasoning": {"effort": (p.effort or "medium") if profile.reasoning else None, "summary": None},
        "error": None,
        "incomplete_details": None,
        "instructions": p.instructions,
        "metadata": p.metadata,
        "temperature": p.temperature,
        "top_p": p.top_p,
        "text": {"format": {"type": "text"}},
        "truncation": "disabled",
        "store": p.store,
        "background": False,
        "service_tier": "default",
        "previous_response_id": None,
        "user": None,
        "status": "in_progress",
        "output": [],
        "usage": None,
    }


def _output_items(profile: ModelProfile, plan: OutputPlan, p: ResponsesParams) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    incomplete = plan.finish == "length"
    if profile.reasoning:
        rs: dict[str, Any] = {"id": p.reasoning_id, "type": "reasoning", "summary": []}
        if incomplete and plan.visible == 0:
            rs["status"] = "incomplete"
        items.append(rs)
    if plan.visible > 0:
        items.append(
            {
                "id": p.message_id,
                "type": "message",
                "status": "incomplete" if incomplete else "completed",
                "content": [{"type": "output_text", "annotations": [], "logprobs": [], "text": plan.text}],
                "role": "assistant",
            }
        )
    return items


def _final(profile: ModelProfile, plan: OutputPlan, cache: CachePlan, p: ResponsesParams) -> dict[str, Any]:
    obj = _response_obj(profile, p)
    if plan.finish == "length":
        obj["status"] = "incomplete"
        obj["incomplete_details"] = {"reason": "max_output_tokens"}
    else:
        obj["status"] = "completed"
        obj["completed_at"] = p.created + 1
    obj["output"] = _output_items(profile, plan, p)
    obj["usage"] = responses_usage(plan, cache)
    return obj


def responses_body(
    profile: ModelProfile, plan: OutputPlan, cache: CachePlan, p: ResponsesParams
) -> dict[str, Any]:
    """A non-streaming ``response`` object (status ``completed`` or ``incomplete``)."""
    return _final(profile, plan, cache, p)


def _event(name: str, data: dict[str, Any]) -> bytes:
    return f"event: {name}\ndata: {_dumps(data)}\n\n".encode()


def responses_stream(
    profile: ModelProfile, plan: OutputPlan, cache: CachePlan, p: ResponsesParams
) -> Rendered:
    """The full Responses event sequence ending in ``response.completed`` / ``response.incomplete``."""
    events: list[bytes] = []
    tokens: list[int] = []
    seq = 0

    def add(name: str, data: dict[str, Any], tok: int) -> None:
        nonlocal seq
        events.append(_event(name, {"type": name, "sequence_number": seq, **data}))
        tokens.append(tok)
        seq += 1

    base = _response_obj(profile, p)
    add("response.created", {"response": base}, 0)
    add("response.in_progress", {"response": base}, 0)
    items = _output_items(profile, plan, p)
    out_index = 0
    if profile.reasoning:
        rs_added = {"id": p.reasoning_id, "type": "reasoning", "summary": []}
        add("response.output_item.added", {"output_index": 0, "item": rs_added}, 0)
        add("response.output_item.done", {"output_index": 0, "item": items[0]}, plan.reasoning)
        out_index = 1
    if plan.visible > 0:
        msg_id = p.message_id
        add(
            "response.output_item.added",
            {
                "output_index": out_index,
                "item": {
                    "id": msg_id,
                    "type": "message",
                    "status": "in_progress",
                    "content": [],
                    "role": "assistant",
                },
            },
            plan.reasoning,
        )
        loc = {"item_id": msg_id, "output_index": out_index, "content_index": 0}
        empty_part = {"type": "output_text", "annotations": [], "logprobs": [], "text": ""}
        add("response.content_part.added", {**loc, "part": empty_part}, plan.reasoning)
        pieces = _split(plan.text, 4 * profile.chunk_tokens)
        loc_json = _dumps(loc)[1:-1]
        for i, (piece, cum) in enumerate(
            zip(pieces, _cumulative(pieces, plan.reasoning, plan.visible), strict=True)
        ):
            obf = f',"obfuscation":"{_OBF[i % len(_OBF)]}"' if p.include_obfuscation else ""
            data = (
                f'{{"type":"response.output_text.delta","sequence_number":{seq},{loc_json},'
                f'"delta":{_dumps(piece)},"logprobs":[]{obf}}}'
            )
            events.append(f"event: response.output_text.delta\ndata: {data}\n\n".encode())
            tokens.append(cum)
            seq += 1
        add("response.output_text.done", {**loc, "text": plan.text, "logprobs": []}, plan.output)
        full_part = {"type": "output_text", "annotations": [], "logprobs": [], "text": plan.text}
        add("response.content_part.done", {**loc, "part": full_part}, plan.output)
        add("response.output_item.done", {"output_index": out_index, "item": items[-1]}, plan.output)
    final_index = len(events)
    final = _final(profile, plan, cache, p)
    terminal = "response.incomplete" if plan.finish == "length" else "response.completed"
    add(terminal, {"response": final}, plan.output)
    raw = final["usage"]

    def error_event(n: int) -> bytes:
        err = {
            "type": "error",
            "sequence_number": n,
            "error": {
                "type": "service_unavailable_error",
                "code": None,
                "message": "The server is overloaded. Please retry.",
                "param": None,
            },
        }
        failed = dict(base)
        failed["status"] = "failed"
        failed["error"] = {"code": "server_error", "message": "The server is overloaded. Please retry."}
        return _event("error", err) + _event(
            "response.failed", {"type": "response.failed", "sequence_number": n + 1, "response": failed}
        )

    def malformed(n: int) -> bytes:
        return (
            "event: response.output_text.delta\n"
            f'data: {{"type":"response.output_text.delta","sequence_number":{n},"delta":"tru\n\n'
        ).encode()

    return Rendered(
        events,
        tokens,
        final_index,
        raw,
        usage_from_openai(raw),
        "incomplete" if plan.finish == "length" else "completed",
        plan.reasoning,
        error_event,
        malformed,
    )
