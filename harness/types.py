"""Core value types shared by the runner, the adapters, the meter and the suites.

These are the contracts between the layers:

- a suite renders an item into a :class:`Prompt` (messages plus the expected answer);
- the runner turns it into a :class:`Request` for one :class:`ModelSpec`;
- an :class:`Adapter` streams it through an official SDK and returns a :class:`Completion` whose
  :class:`Usage` is already normalised (invariant 4), or raises :class:`harness.errors.ProviderError`;
- the pricing layer turns :class:`Usage` into exact dollars.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import math
import struct
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

__all__ = [
    "Adapter",
    "AnswerFormat",
    "Completion",
    "FinishReason",
    "IMAGE_MEDIA_TYPES",
    "Image",
    "ImageRule",
    "Message",
    "ModelSpec",
    "Prompt",
    "RateLimitInfo",
    "Request",
    "RetryDecision",
    "Role",
    "UnitKey",
    "Usage",
    "WORST_IMAGE_TOKENS",
    "image_tokens_upper_bound",
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


#: The image formats every provider tollbench speaks accepts (OpenAI, Anthropic, Gemini).
IMAGE_MEDIA_TYPES = ("image/png", "image/jpeg", "image/gif", "image/webp")


def _sniff(data: bytes) -> str | None:
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if data.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return "image/gif"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return None


def _jpeg_size(data: bytes) -> tuple[int, int] | None:
    i = 2
    while i + 9 < len(data):
        if data[i] != 0xFF:
            return None
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:
            i += 2
            continue
        (length,) = struct.unpack(">H", data[i + 2 : i + 4])
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            h, w = struct.unpack(">HH", data[i + 5 : i + 9])
            return w, h
        i += 2 + length
    return None


def _pixel_size(media_type: str, data: bytes) -> tuple[int, int] | None:
    """Width and height from the image's header, or None when it cannot be read."""
    try:
        if media_type == "image/png" and data[12:16] == b"IHDR":
            w, h = struct.unpack(">II", data[16:24])
            return (w, h) if w and h else None
        if media_type == "image/gif":
            w, h = struct.unpack("<HH", data[6:10])
            return (w, h) if w and h else None
        if media_type == "image/jpeg":
            return _jpeg_size(data)
        if media_type == "image/webp":
            chunk = data[12:16]
            if chunk == b"VP8 ":
                w, h = struct.unpack("<HH", data[26:30])
                return w & 0x3FFF, h & 0x3FFF
            if chunk == b"VP8L":
                b = data[21:25]
                w = 1 + (((b[1] & 0x3F) << 8) | b[0])
                h = 1 + (((b[3] & 0x0F) << 10) | (b[2] << 2) | ((b[1] & 0xC0) >> 6))
                return w, h
            if chunk == b"VP8X":
                w = 1 + int.from_bytes(data[24:27], "little")
                h = 1 + int.from_bytes(data[27:30], "little")
                return w, h
    except (struct.error, IndexError):
        return None
    return None


@dataclass(frozen=True, slots=True)
class Image:
    """An image sent with a message: its media type and bytes (what every provider's wire format
    carries, base64-encoded: OpenAI ``image_url`` / ``input_image`` data URLs, Anthropic ``base64``
    sources, Gemini ``inline_data``)."""

    media_type: str
    """One of :data:`IMAGE_MEDIA_TYPES`."""
    data: bytes

    @classmethod
    def from_data_url(cls, value: str) -> Image:
        """An image from a ``data:image/...;base64,...`` URL or a bare base64 string (HLE's ``image``).

        The media type is read from the bytes (providers refuse a declared type that does not match).

        Raises:
            ValueError: not base64, or not a PNG, JPEG, GIF or WebP image.
        """
        text = value.strip()
        declared: str | None = None
        if text.startswith("data:"):
            header, sep, text = text.partition(",")
            if not sep or not header.endswith(";base64"):
                raise ValueError("a data URL must be base64 (data:image/png;base64,...)")
            declared = header[5 : -len(";base64")].lower() or None
        try:
            data = base64.b64decode("".join(text.split()), validate=True)
        except (binascii.Error, ValueError):
            raise ValueError("the image is not valid base64") from None
        media_type = _sniff(data)
        if media_type is None:
            shown = f" (declared {declared})" if declared else ""
            raise ValueError(f"the image is not a PNG, JPEG, GIF or WebP file{shown}")
        return cls(media_type, data)

    @property
    def b64(self) -> str:
        return base64.b64encode(self.data).decode("ascii")

    @property
    def data_url(self) -> str:
        return f"data:{self.media_type};base64,{self.b64}"

    @property
    def sha256(self) -> str:
        """Hex SHA-256 of the bytes: what the response cache's key holds for this image."""
        return hashlib.sha256(self.data).hexdigest()

    @property
    def pixel_size(self) -> tuple[int, int] | None:
        """``(width, height)`` from the file's header; None when it cannot be read."""
        return _pixel_size(self.media_type, self.data)


@dataclass(frozen=True, slots=True)
class ImageRule:
    """How a model bills an image in input tokens, as an upper bound (docs/providers.md, images).

    ``tiles``: OpenAI's tile rule (fit in 2048x2048, shortest side 768, then ``base`` + ``per_unit``
    per 512-pixel tile: 4 to 8 tiles). ``patches``: OpenAI's 32-pixel patches, at
    most 1,536, times ``per_unit``. ``pixels``: Anthropic's ``width * height / 750``, at most
    ``cap``. ``gemini``: 258 for an image of at most 384x384, else 258 per 768-pixel tile, and at
    least ``cap`` (Gemini 3's media resolution). ``fixed``: ``cap`` tokens per image (a user's
    ``image_tokens`` alias key).
    """

    kind: Literal["tiles", "patches", "pixels", "gemini", "fixed"]
    base: int = 0
    per_unit: float = 0.0
    cap: int = 0


#: The largest per-image bound of any rule tollbench knows (gpt-4o-mini: 2,833 + 8 x 5,667), used for
#: a model whose image rule is unknown (an unknown cost counts as its worst case).
WORST_IMAGE_TOKENS = 48_169

#: What a Gemini image whose size cannot be read from its header is reserved as (pixels a side).
_GEMINI_UNKNOWN_SIDE = 8192


def _gemini_tiles(size: tuple[int, int] | None) -> int:
    w, h = size or (_GEMINI_UNKNOWN_SIDE, _GEMINI_UNKNOWN_SIDE)
    if w <= 384 and h <= 384:
        return 258
    return math.ceil(w / 768) * math.ceil(h / 768) * 258


def image_tokens_upper_bound(rule: ImageRule | None, image: Image) -> int:
    """An upper bound of the input tokens ``image`` is billed for under ``rule`` (None: unknown, the
    worst case of every rule)."""
    size = image.pixel_size
    if rule is None:
        return max(WORST_IMAGE_TOKENS, _gemini_tiles(size))
    if rule.kind == "tiles":
        tiles = 8
        if size is not None:
            # The short side counted as exactly 768 (two tiles), the long side in proportion up to
            # 2048 (four): at least what the resize to fit 2048x2048 and 768 on the short side gives.
            short, long = sorted(size)
            tiles = 2 * math.ceil(min(2048.0, 768 * long / short) / 512)
        return rule.base + math.ceil(rule.per_unit * tiles)
    if rule.kind == "patches":
        patches = 1536
        if size is not None:
            patches = min(1536, math.ceil(size[0] / 32) * math.ceil(size[1] / 32))
        return math.ceil(rule.per_unit * patches)
    if rule.kind == "pixels":
        if size is None:
            return rule.cap
        return min(rule.cap, math.ceil(size[0] * size[1] / 750))
    if rule.kind == "gemini":
        return max(rule.cap, _gemini_tiles(size))
    return rule.cap


@dataclass(frozen=True, slots=True)
class Message:
    """One chat message; ``system`` messages become OpenAI developer/system or Anthropic ``system``.

    ``images`` go with a user message, after its text (as CAIS sends HLE's): each adapter sends them
    in its provider's wire format."""

    role: Role
    content: str
    images: tuple[Image, ...] = ()


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
    image_rule: ImageRule | None = None
    """How the model bills an image (:class:`ImageRule`); None: it takes no images (or tollbench's
    registry does not know that it does: ``image_tokens`` in its alias declares it)."""
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
#: Per-image allowance for the part's framing tokens.
_IMAGE_OVERHEAD = 16


def input_tokens_upper_bound(
    messages: tuple[Message, ...] | list[Message], image_rule: ImageRule | None = None
) -> int:
    """An upper bound on prompt tokens: UTF-8 bytes of all text plus per-message framing, plus each
    image's bound under ``image_rule`` (None: the worst case of every rule).

    Every tokenizer the providers use emits at most one token per byte of text, so the byte count
    bounds the text tokens; the overheads cover role and format tokens the providers add.
    """
    total = _REQUEST_OVERHEAD
    for m in messages:
        total += len(m.content.encode("utf-8")) + len(m.role) + _MESSAGE_OVERHEAD
        for image in m.images:
            total += image_tokens_upper_bound(image_rule, image) + _IMAGE_OVERHEAD
    return total
