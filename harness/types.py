"""Core value types shared by the runner, the adapters, the meter and the suites.

These are the contracts between the layers:

- a suite renders an item into a :class:`Prompt` (messages plus the expected answer);
- the runner turns it into a :class:`Request` for one :class:`ModelSpec`;
- an :class:`Adapter` streams it through an official SDK and returns a :class:`Completion` whose
  :class:`Usage` is already normalised (invariant 4), or raises :class:`harness.errors.ProviderError`;
- the pricing layer turns :class:`Usage` into exact dollars.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

__all__ = [
    "Adapter",
    "AnswerFormat",
    "Completion",
    "FinishReason",
    "Message",
    "ModelSpec",
    "Prompt",
    "RateLimitInfo",
    "Request",
    "RetryDecision",
    "Role",
    "UnitKey",
    "Usage",
    "input_tokens_upper_bound",
]

UnitKey = tuple[str, str, str, int]
"""What identifies one unit of a run across sessions: (model, suite, item id, repeat)."""


Role = Literal["system", "user", "assistant"]

#: Normalised reason a generation ended. ``length`` = cut at the output limit (OpenAI ``length``,
#: Responses ``incomplete/max_output_tokens``, Anthropic ``max_tokens``); ``refusal`` = the model
#: declined (Anthropic ``refusal``, OpenAI ``content_filter``/``refusal``); ``other`` = anything else.
FinishReason = Literal["stop", "length", "refusal", "other"]

#: How a prompt asks the model to state its final answer.
AnswerFormat = Literal["letter", "boxed", "text"]


@dataclass(frozen=True, slots=True)
class Message:
    """One chat message; ``system`` messages become OpenAI developer/system or Anthropic ``system``."""

    role: Role
    content: str


@dataclass(frozen=True, slots=True)
class Usage:
    """Token usage normalised across providers (PROTOCOLS.md §8.1). All counts are disjoint except
    ``reasoning``, which is a subset of ``output``.

    OpenAI reports cached tokens *inside* ``prompt_tokens``; Anthropic reports cache reads and writes
    *on top of* ``input_tokens``. Adapters convert both to this record once.
    """

    input_uncached: int = 0
    """Input tokens billed at the full input rate (excludes cache reads and writes)."""
    cache_read: int = 0
    """Input tokens served from the prompt cache."""
    cache_write_5m: int = 0
    """Input tokens written to the cache with the default (5 minute / provider default) lifetime."""
    cache_write_1h: int = 0
    """Input tokens written to the cache with the long (1 hour) lifetime."""
    output: int = 0
    """All billed output tokens, visible text and reasoning/thinking together."""
    reasoning: int = 0
    """Reasoning or thinking tokens, already counted inside ``output``."""

    @property
    def input_total(self) -> int:
        """Every prompt token: uncached + cache reads + cache writes (what long-context tiers look at)."""
        return self.input_uncached + self.cache_read + self.cache_write_5m + self.cache_write_1h

    @property
    def cache_write(self) -> int:
        return self.cache_write_5m + self.cache_write_1h

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            input_uncached=self.input_uncached + other.input_uncached,
            cache_read=self.cache_read + other.cache_read,
            cache_write_5m=self.cache_write_5m + other.cache_write_5m,
            cache_write_1h=self.cache_write_1h + other.cache_write_1h,
            output=self.output + other.output,
            reasoning=self.reasoning + other.reasoning,
        )

    def as_dict(self) -> dict[str, int]:
        return {
            "input_uncached": self.input_uncached,
            "cache_read": self.cache_read,
            "cache_write_5m": self.cache_write_5m,
            "cache_write_1h": self.cache_write_1h,
            "output": self.output,
            "reasoning": self.reasoning,
        }


@dataclass(frozen=True, slots=True)
class ModelSpec:
    """A model as the user names it, resolved to what is sent to the provider.

    ``name`` is what appears in reports (``openai/o3-mini-high``); ``provider`` selects the price table
    and API key; ``api`` selects the adapter; ``model`` is the id sent on the wire.
    """

    name: str
    provider: str
    api: str
    model: str
    reasoning_effort: str | None = None
    thinking_budget: int | None = None
    max_output_tokens: int | None = None
    temperature: float | None = None
    base_url: str | None = None
    extra_body: Mapping[str, Any] = field(default_factory=dict)
    dialect: str = ""
    """How the endpoint speaks and reports usage (:data:`harness.models.DIALECTS`): ``openai`` for
    OpenAI's own API, ``compat`` for any other OpenAI-compatible server (vLLM, llama.cpp, Ollama, a
    ``--base-url``), or a named provider's (``deepseek``, ``xai``, ``openrouter``, ``together``).
    Empty: the provider's own API."""
    streaming: str = "auto"
    """``auto`` (stream; non-streaming once the endpoint is seen to send no stream usage), ``always``
    or ``never`` (non-streaming requests, whose answers carry usage)."""


@dataclass(frozen=True, slots=True)
class Request:
    """One generation request. ``max_output_tokens`` is mandatory (invariant 1): it includes
    reasoning/thinking tokens and is what the budget reserves against."""

    model: str
    messages: tuple[Message, ...]
    max_output_tokens: int
    reasoning_effort: str | None = None
    thinking_budget: int | None = None
    temperature: float | None = None
    seed: int | None = None
    extra_body: Mapping[str, Any] = field(default_factory=dict)
    extra_headers: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class RateLimitInfo:
    """What the provider's rate-limit headers said on the last response (None = not sent)."""

    remaining_requests: int | None = None
    remaining_tokens: int | None = None
    reset_requests_s: float | None = None
    reset_tokens_s: float | None = None


@dataclass(frozen=True, slots=True)
class Completion:
    """A finished generation with normalised usage."""

    text: str
    usage: Usage
    usage_known: bool
    """False when the stream ended without its final usage; the call is then charged its reservation."""
    finish_reason: FinishReason
    raw_finish_reason: str | None
    raw_usage: Mapping[str, Any] | None
    request_id: str | None
    response_model: str | None
    service_tier: str | None = None
    ttft_s: float | None = None
    """Seconds from sending the request to the first content (text or reasoning) byte."""
    latency_s: float = 0.0
    rate_limits: RateLimitInfo | None = None
    provider_cost_usd: str | None = None
    """Provider-reported cost (OpenRouter ``usage.cost`` plus any upstream cost, xAI
    ``cost_in_usd_ticks``) as a decimal string of US dollars, when present."""
    output_bound: int = 0
    """An upper bound of the output tokens received (UTF-8 bytes of all streamed text, visible and
    reasoning, plus one per content chunk): what a server could bill for what was seen. A
    usage-unknown call is charged at least this (docs/design.md invariant 11)."""
    streamed: bool = True
    """False when the answer came from a non-streaming request."""


@dataclass(frozen=True, slots=True)
class RetryDecision:
    """An adapter's classification of a failure; the harness decides what to do with it."""

    retry: bool
    kind: Literal["no", "transient", "rate_limit"]
    retry_after_s: float | None = None

    @classmethod
    def no(cls) -> RetryDecision:
        return cls(False, "no")

    @classmethod
    def transient(cls, retry_after_s: float | None = None) -> RetryDecision:
        return cls(True, "transient", retry_after_s)

    @classmethod
    def rate_limit(cls, retry_after_s: float | None = None) -> RetryDecision:
        return cls(True, "rate_limit", retry_after_s)


@dataclass(frozen=True, slots=True)
class Prompt:
    """A suite item rendered for one repeat: what to send and what counts as correct."""

    messages: tuple[Message, ...]
    target: str
    """The correct answer in the form this prompt asks for (a letter after shuffling, a number, ...)."""
    answer_format: AnswerFormat
    choices: tuple[str, ...] = ()
    """For multiple choice, the option letters offered (``("A", "B", "C", "D")``)."""
    meta: Mapping[str, Any] = field(default_factory=dict)
    """Recorded with the item result (for example the option shuffle seed and permutation)."""


@runtime_checkable
class Adapter(Protocol):
    """One provider API, driven through its official SDK with SDK retries off (``max_retries=0``)."""

    no_stream_usage: bool
    """The endpoint is known to end streams without usage: with ``ModelSpec.streaming == "auto"`` the
    adapter then sends non-streaming requests, whose answers carry usage."""
    cuts_streams: bool
    """The endpoint (not OpenAI's own) is known to cut streams short: with ``streaming == "auto"`` the
    adapter then sends non-streaming requests too."""

    @property
    def provider(self) -> str:
        """Price-table provider name: ``openai`` or ``anthropic``."""
        ...

    @property
    def api(self) -> str:
        """``chat``, ``responses`` or ``messages``."""
        ...

    def input_tokens_upper_bound(self, request: Request) -> int:
        """A true upper bound of the prompt tokens this request can be billed for."""
        ...

    async def complete(self, request: Request) -> Completion:
        """Stream the request and return the completion.

        Raises:
            harness.errors.ProviderError: any provider, transport or protocol failure, with a
                retry classification and whether generation may already have been billed.
        """
        ...

    async def aclose(self) -> None: ...


#: Per-message allowance for role markers and framing in the upper bound.
_MESSAGE_OVERHEAD = 16
_REQUEST_OVERHEAD = 32


def input_tokens_upper_bound(messages: tuple[Message, ...] | list[Message]) -> int:
    """An upper bound on prompt tokens: UTF-8 bytes of all text plus per-message framing.

    Every tokenizer the providers use emits at most one token per byte of text, so the byte count
    bounds the text tokens; the overheads cover role and format tokens the providers add.
    """
    total = _REQUEST_OVERHEAD
    for m in messages:
        total += len(m.content.encode("utf-8")) + len(m.role) + _MESSAGE_OVERHEAD
    return total
