"""What every adapter shares: its model, its key (kept only to redact it from messages), the input
bound used for reservations, and closing its SDK client."""

from __future__ import annotations

from typing import Any, ClassVar

from harness.types import ModelSpec, Request, input_tokens_upper_bound

__all__ = ["AdapterBase", "nonneg"]


def nonneg(value: object) -> int:
    """An SDK usage field as a count: ints above zero pass, anything else (None, negatives) is 0."""
    return value if isinstance(value, int) and value > 0 else 0


class AdapterBase:
    PROVIDER: ClassVar[str]
    """Price-table provider name."""
    API: ClassVar[str]
    """``chat``, ``responses`` or ``messages``."""

    _client: Any

    def __init__(self, spec: ModelSpec, api_key: str) -> None:
        self._spec = spec
        self._api_key = api_key

    @property
    def provider(self) -> str:
        """Price-table provider (``openai`` or ``anthropic``)."""
        return self.PROVIDER

    @property
    def api(self) -> str:
        """The provider API this adapter speaks."""
        return self.API

    @property
    def spec(self) -> ModelSpec:
        """The model this adapter serves."""
        return self._spec

    def input_tokens_upper_bound(self, request: Request) -> int:
        """UTF-8 bytes of every message plus framing (see :func:`harness.types.input_tokens_upper_bound`)."""
        return input_tokens_upper_bound(request.messages)

    async def aclose(self) -> None:
        """Close the SDK client's connection pool."""
        await self._client.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._spec.name!r})"
