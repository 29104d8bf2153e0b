"""What every adapter shares: its model, its key (kept only to redact it from messages), the input
bound used for reservations, the checked ``extra_body``, and closing its SDK client."""

from __future__ import annotations

import json
from contextlib import AbstractContextManager, nullcontext
from typing import Any, ClassVar

from harness.models import check_extra_body
from harness.types import ModelSpec, Request, input_tokens_upper_bound

__all__ = ["TOOLS_OVERHEAD_TOKENS", "AdapterBase", "extra_body_tokens_upper_bound", "nonneg"]

#: Allowance for the system prompt a provider adds when tools are given (Anthropic documents a few
#: hundred tokens of tool-use system prompt), on top of the tools' own JSON.
TOOLS_OVERHEAD_TOKENS = 1024


def extra_body_tokens_upper_bound(extra: dict[str, Any]) -> int:
    """An upper bound on the prompt tokens ``extra`` can add: the UTF-8 bytes of its JSON (it is sent
    as JSON, and no tokenizer emits more than one token per byte), plus an allowance when it carries
    tools. ``instructions``, ``tools``, extra ``messages`` / ``input`` all count."""
    if not extra:
        return 0
    text = json.dumps(extra, ensure_ascii=False, separators=(",", ":"), default=str)
    return len(text.encode("utf-8")) + (TOOLS_OVERHEAD_TOKENS if "tools" in extra else 0)


def nonneg(value: object) -> int:
    """An SDK usage field as a count: ints above zero pass, anything else (None, negatives) is 0."""
    return value if isinstance(value, int) and value > 0 else 0


class AdapterBase:
    PROVIDER: ClassVar[str]
    """Price-table provider name."""
    API: ClassVar[str]
    """``chat``, ``responses`` or ``messages``."""
    POOLED: ClassVar[bool] = False
    """The adapter takes ``max_connections`` and ``fast_stream`` (see :func:`adapters.create_adapter`)."""

    _client: Any
    _pool: Any = None
    """A :class:`adapters._common.ClientPool` when the adapter was built with ``max_connections``."""

    def __init__(self, spec: ModelSpec, api_key: str) -> None:
        self._spec = spec
        self._api_key = api_key
        self.no_stream_usage = False
        """The endpoint was seen to end a stream without its usage (see ``ModelSpec.streaming``)."""
        self.cuts_streams = False
        """The endpoint was seen to cut a stream short (no finish reason): llama.cpp's server does this to
        the running stream when the next request arrives, and answers whole requests one by one."""

    @property
    def provider(self) -> str:
        """The model id's provider (``openai``, ``deepseek``, ``vllm`` ...)."""
        return self._spec.provider or self.PROVIDER

    @property
    def api(self) -> str:
        """The provider API this adapter speaks."""
        return self.API

    @property
    def spec(self) -> ModelSpec:
        """The model this adapter serves."""
        return self._spec

    def extra_body(self, request: Request) -> dict[str, Any]:
        """The model's ``extra_body`` overlaid with the request's, checked.

        Raises:
            harness.errors.DataError: a billing-relevant key (see
                :func:`harness.models.check_extra_body`); nothing is sent.
        """
        extra: dict[str, Any] = {**self._spec.extra_body, **request.extra_body}
        if extra:
            check_extra_body(extra, model=self._spec.name)
        return extra

    def input_tokens_upper_bound(self, request: Request) -> int:
        """UTF-8 bytes of every message plus framing (see :func:`harness.types.input_tokens_upper_bound`),
        each image's bound under the model's image rule (the worst case when it has none), plus
        everything ``extra_body`` sends (see :func:`extra_body_tokens_upper_bound`)."""
        extra: dict[str, Any] = {**self._spec.extra_body, **request.extra_body}
        bound = input_tokens_upper_bound(request.messages, self._spec.image_rule)
        return bound + extra_body_tokens_upper_bound(extra)

    def _lease(self) -> AbstractContextManager[Any]:
        """The SDK client for one call (one with a connection to spare, when there is a pool)."""
        if self._pool is not None:
            lease: AbstractContextManager[Any] = self._pool.lease()
            return lease
        return nullcontext(self._client)

    async def aclose(self) -> None:
        """Close the SDK client's connection pool (every client's, with a pool)."""
        if self._pool is not None:
            await self._pool.aclose()
        else:
            await self._client.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._spec.name!r})"
