"""Provider adapters: one module per provider API. Importing this package imports no SDK.

:func:`create_adapter` picks the module by ``ModelSpec.api`` and imports it (and with it the SDK) only
then, so ``tollbench runs`` or ``tollbench costs`` never pay for importing ``openai``/``anthropic``/
``google.genai``.
See ``docs/adapters.md`` for how to add a provider.
"""

from __future__ import annotations

import importlib

from harness.errors import UnknownModel
from harness.types import Adapter, ModelSpec

__all__ = ["ADAPTERS", "create_adapter"]

#: ``ModelSpec.api`` -> (module, class). Modules are imported on first use.
ADAPTERS: dict[str, tuple[str, str]] = {
    "chat": ("adapters.openai_chat", "OpenAIChatAdapter"),
    "responses": ("adapters.openai_responses", "OpenAIResponsesAdapter"),
    "messages": ("adapters.anthropic_messages", "AnthropicMessagesAdapter"),
    # issue 11: Google Gemini through google-genai
    "gemini": ("adapters.google_genai", "GoogleGenAIAdapter"),
}


def create_adapter(
    spec: ModelSpec,
    *,
    api_key: str,
    base_url: str | None = None,
    stall_timeout_s: float = 120.0,
    connect_timeout_s: float = 10.0,
    max_connections: int | None = None,
    fast_stream: bool | None = None,
) -> Adapter:
    """Build the adapter for a resolved model.

    The SDK client inside is built with ``max_retries=0``, the explicit ``api_key`` and an
    ``httpx2.Timeout`` whose read timeout is ``stall_timeout_s``, so a stream that sends no byte for
    that long fails the attempt.

    Args:
        spec: the resolved model (:func:`harness.models.resolve_model`).
        api_key: the provider key (:func:`harness.models.api_key_for`).
        base_url: overrides ``spec.base_url``; when both are None the SDK uses its default or its
            ``*_BASE_URL`` environment variable.
        stall_timeout_s: longest silence allowed while streaming.
        connect_timeout_s: connect timeout.
        max_connections: the most calls in flight at once (the run's concurrency): the OpenAI and
            Anthropic adapters then spread their calls over SDK clients of at most 16 connections
            each (:class:`adapters._common.ClientPool`). None: one SDK client with the SDK's pool.
        fast_stream: read streams from the SDK's raw response with :mod:`adapters._sse` (the
            default where an adapter has it); False: the SDK's own stream of models.

    Raises:
        harness.errors.UnknownModel: ``spec.api`` names no adapter.
    """
    try:
        module_name, class_name = ADAPTERS[spec.api]
    except KeyError:
        known = ", ".join(sorted(ADAPTERS))
        raise UnknownModel(f"{spec.name}: unknown api {spec.api!r}; use one of {known}") from None
    module = importlib.import_module(module_name)
    cls = getattr(module, class_name)
    extra: dict[str, object] = {}
    if getattr(cls, "POOLED", False):  # the adapters with a ClientPool and a fast stream path
        if max_connections is not None:
            extra["max_connections"] = max_connections
        if fast_stream is not None:
            extra["fast_stream"] = fast_stream
    adapter: Adapter = cls(
        spec,
        api_key=api_key,
        base_url=base_url if base_url is not None else spec.base_url,
        stall_timeout_s=stall_timeout_s,
        connect_timeout_s=connect_timeout_s,
        **extra,
    )
    return adapter
