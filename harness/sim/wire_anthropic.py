"""Anthropic wire shapes: Messages bodies and streams (PROTOCOLS.md §4).

Thinking (when enabled) is streamed as a ``thinking`` block with ``thinking_delta`` events and a
closing ``signature_delta``, then the text block; ``message_delta`` carries the cumulative usage
(thinking inside ``output_tokens``, reported in ``output_tokens_details.thinking_tokens``).
"""

from __future__ import annotations

import base64
import json
import random
from dataclasses import dataclass
from typing import Any

from harness.sim.generate import CachePlan, OutputPlan
from harness.sim.invoice import usage_from_anthropic
from harness.sim.profiles import ModelProfile
from harness.sim.streaming import Rendered

__all__ = ["MessageParams", "message_body", "message_stream", "signature"]


def _dumps(obj: Any) -> str:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False)


def signature(rng: random.Random) -> str:
    """A plausible opaque thinking signature (base64)."""
    return base64.b64encode(rng.randbytes(48)).decode()


@dataclass(frozen=True, slots=True)
class MessageParams:
    """Per-request values the Messages renderers need."""

    body_id: str
    request_id: str
    signature: str
    thinking: bool


def _stop_reason(plan: OutputPlan) -> str:
    return "max_tokens" if plan.finish == "length" else "end_turn"


def message_usage(plan: OutputPlan, cache: CachePlan, *, output_tokens: int | None = None) -> dict[str, Any]:
    """The ``usage`` of a Message (cache reads and writes on top of ``input_tokens``)."""
    w1h = cache.cache_write if cache.cache_write_ttl == "1h" else 0
    return {
        "input_tokens": cache.uncached,
        "cache_creation_input_tokens": cache.cache_write,
        "cache_read_input_tokens": cache.cache_read,
        "cache_creation": {
            "ephemeral_5m_input_tokens": cache.cache_write - w1h,
            "ephemeral_1h_input_tokens": w1h,
        },
        "output_tokens": plan.output if output_tokens is None else output_tokens,
        "output_tokens_details": {"thinking_tokens": plan.reasoning},
        "server_tool_use": None,
        "service_tier": "standard",
        "inference_geo": "not_available",
    }


def _content(plan: OutputPlan, p: MessageParams) -> list[dict[str, Any]]:
    blocks: list[dict[str, Any]] = []
    if p.thinking and plan.reasoning:
        blocks.append({"type": "thinking", "thinking": plan.thinking_text, "signature": p.signature})
    if plan.visible > 0 or not blocks:
        blocks.append({"type": "text", "text": plan.text})
    return blocks


def message_body(
    profile: ModelProfile, plan: OutputPlan, cache: CachePlan, p: MessageParams
) -> dict[str, Any]:
    """A non-streaming Message."""
    return {
        "id": p.body_id,
        "type": "message",
        "role": "assistant",
        "model": profile.response_model,
        "content": _content(plan, p),
        "stop_reason": _stop_reason(plan),
        "stop_sequence": None,
        "stop_details": None,
        "usage": message_usage(plan, cache),
    }


def _event(name: str, data: str) -> bytes:
    return f"event: {name}\ndata: {data}\n\n".encode()


_PING = b'event: ping\ndata: {"type": "ping"}\n\n'


def _pieces(text: str, chunk_chars: int) -> list[str]:
    return [text[i : i + chunk_chars] for i in range(0, len(text), chunk_chars)]


def message_stream(profile: ModelProfile, plan: OutputPlan, cache: CachePlan, p: MessageParams) -> Rendered:
    """``message_start``, thinking and text blocks, ``message_delta`` (cumulative usage), ``message_stop``."""
    events: list[bytes] = []
    tokens: list[int] = []

    def add(raw: bytes, tok: int) -> None:
        events.append(raw)
        tokens.append(tok)

    start_usage = message_usage(plan, cache, output_tokens=min(3, max(1, plan.output)))
    del start_usage["output_tokens_details"]
    del start_usage["server_tool_use"]
    message: dict[str, Any] = {
        "id": p.body_id,
        "type": "message",
        "role": "assistant",
        "model": profile.response_model,
        "content": [],
        "stop_reason": None,
        "stop_sequence": None,
        "stop_details": None,
        "usage": start_usage,
    }
    add(_event("message_start", _dumps({"type": "message_start", "message": message})), 0)
    index = 0
    pinged = False
    done = 0
    if p.thinking and plan.reasoning:
        block = {
            "type": "content_block_start",
            "index": 0,
            "content_block": {"type": "thinking", "thinking": "", "signature": ""},
        }
        add(_event("content_block_start", _dumps(block)), 0)
        add(_PING, 0)
        pinged = True
        nbytes = 0
        for piece in _pieces(plan.thinking_text, 4 * profile.thinking_chunk_tokens):
            nbytes += len(piece)
            delta = '{"type":"content_block_delta","index":0,"delta":{"type":"thinking_delta","thinking":'
            add(
                _event("content_block_delta", delta + _dumps(piece) + "}}"),
                min(plan.reasoning, (nbytes + 3) // 4),
            )
        sig = {
            "type": "content_block_delta",
            "index": 0,
            "delta": {"type": "signature_delta", "signature": p.signature},
        }
        add(_event("content_block_delta", _dumps(sig)), plan.reasoning)
        add(_event("content_block_stop", '{"type":"content_block_stop","index":0}'), plan.reasoning)
        index = 1
        done = plan.reasoning
    if plan.visible > 0 or index == 0:
        block = {"type": "content_block_start", "index": index, "content_block": {"type": "text", "text": ""}}
        add(_event("content_block_start", _dumps(block)), done)
        if not pinged:
            add(_PING, done)
        head = f'{{"type":"content_block_delta","index":{index},"delta":{{"type":"text_delta","text":'
        nbytes = 0
        for piece in _pieces(plan.text, 4 * profile.chunk_tokens):
            nbytes += len(piece.encode("utf-8"))
            add(
                _event("content_block_delta", head + _dumps(piece) + "}}"),
                done + min(plan.visible, (nbytes + 3) // 4),
            )
        add(_event("content_block_stop", f'{{"type":"content_block_stop","index":{index}}}'), plan.output)
    final_index = len(events)
    full = message_usage(plan, cache)
    delta_usage = {
        "input_tokens": full["input_tokens"],
        "cache_creation_input_tokens": full["cache_creation_input_tokens"],
        "cache_read_input_tokens": full["cache_read_input_tokens"],
        "output_tokens": full["output_tokens"],
        "output_tokens_details": full["output_tokens_details"],
    }
    md = {
        "type": "message_delta",
        "delta": {"stop_reason": _stop_reason(plan), "stop_sequence": None, "stop_details": None},
        "usage": delta_usage,
    }
    add(_event("message_delta", _dumps(md)), plan.output)
    add(_event("message_stop", '{"type":"message_stop"}'), plan.output)

    def error_event(_n: int) -> bytes:
        err = {
            "type": "error",
            "error": {"type": "overloaded_error", "message": "Overloaded"},
            "request_id": p.request_id,
        }
        return _event("error", _dumps(err))

    def malformed(_n: int) -> bytes:
        return _event(
            "content_block_delta", f'{{"type":"content_block_delta","index":{index},"delta":{{"type":"text_de'
        )

    return Rendered(
        events,
        tokens,
        final_index,
        full,
        usage_from_anthropic(full),
        "incomplete" if plan.finish == "length" else "completed",
        plan.reasoning,
        error_event,
        malformed,
    )
