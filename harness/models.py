"""Model ids, aliases with parameters, and API keys.

A model is named ``provider/model`` (``openai/o3-mini``, ``anthropic/claude-sonnet-4-5``,
``openai-responses/o3``). An *alias* is a name bound to a model plus parameters, so that effort levels
can be benchmarked as separate models (``openai/o3-mini-high`` = ``openai/o3-mini`` with
``reasoning_effort = "high"``). Aliases come from :data:`BUILTIN_ALIASES`, the user's
``~/.config/tollbench/models.toml`` (or ``$TOLLBENCH_MODELS``) and a file given on the command line::

    [models."openai/o3-mini-high"]
    model = "openai/o3-mini"
    reasoning_effort = "high"

    [models."local/qwen"]
    model = "openai/Qwen/Qwen3-8B"
    base_url = "http://127.0.0.1:8000/v1"
    max_output_tokens = 4096

API keys are read from the environment only (invariant 8).
"""

from __future__ import annotations

import math
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.errors import ConfigError, DataError, MissingApiKey, UnknownModel
from harness.types import ImageRule, ModelSpec

__all__ = [
    "ALIAS_KEYS",
    "BILLING_EXTRA_BODY_KEYS",
    "BUILTIN_ALIASES",
    "PROVIDERS",
    "DIALECTS",
    "IMAGE_RULES",
    "LOCAL_PLACEHOLDER_KEY",
    "STREAMING_MODES",
    "ProviderInfo",
    "api_key_for",
    "base_url_env",
    "default_base_url",
    "dialect_for",
    "image_rule_for",
    "price_provider",
    "provider_info",
    "check_extra_body",
    "default_alias_file",
    "load_aliases",
    "non_finite_path",
    "require_api_key",
    "resolve_model",
]


@dataclass(frozen=True, slots=True)
class ProviderInfo:
    """What the ``provider`` part of a model id selects."""

    price_provider: str
    """Provider name in the price table (``openai``, ``anthropic``, ``deepseek`` ...)."""
    default_api: str
    """Adapter used unless an alias says otherwise: ``chat``, ``responses``, ``messages`` or ``gemini``."""
    api_key_env: str
    """Environment variable holding the API key."""
    base_url_env: str
    """Environment variable for a custom endpoint (the SDK's own for OpenAI and Anthropic)."""
    apis: tuple[str, ...]
    """The APIs this provider speaks."""
    default_base_url: str | None = None
    """Where requests go when no base URL is given (None: the SDK's default)."""
    dialect: str = ""
    """How its usage is reported and the output limit sent (see :data:`DIALECTS`); empty = its own API."""
    key_required: bool = True
    """False for local servers, which take any key (a placeholder is sent when none is set)."""
    label: str = ""
    """What it is, for ``tollbench models`` and messages."""
    api_key_env_fallback: str = ""
    """A second variable read when ``api_key_env`` is unset (``GOOGLE_API_KEY`` for Gemini)."""


#: Dialects of OpenAI-compatible chat endpoints: how each reports usage and reads the output limit.
#: ``openai`` is OpenAI's own API (``max_completion_tokens`` only: it refuses ``max_tokens`` on
#: reasoning models); every other dialect is sent the limit in both ``max_tokens`` and
#: ``max_completion_tokens``, since many servers read only one of them (llama.cpp reads ``max_tokens``).
DIALECTS: dict[str, str] = {
    "openai": "OpenAI's own API",
    "compat": "an OpenAI-compatible server (vLLM, llama.cpp, Ollama, any --base-url)",
    "deepseek": "DeepSeek: prompt_cache_hit_tokens / prompt_cache_miss_tokens at the top of usage",
    "xai": "xAI: reasoning tokens decided per response from total_tokens; cost_in_usd_ticks",
    "openrouter": "OpenRouter: usage.cost, plus cost_details.upstream_inference_cost on BYOK routes",
    "together": "Together AI: OpenAI usage shapes",
}

_LOCAL = "local OpenAI-compatible server"

PROVIDERS: dict[str, ProviderInfo] = {
    "openai": ProviderInfo(
        "openai",
        "chat",
        "OPENAI_API_KEY",
        "OPENAI_BASE_URL",
        ("chat", "responses"),
        dialect="openai",
        label="OpenAI (Chat Completions)",
    ),
    "openai-responses": ProviderInfo(
        "openai",
        "responses",
        "OPENAI_API_KEY",
        "OPENAI_BASE_URL",
        ("chat", "responses"),
        dialect="openai",
        label="OpenAI (Responses API)",
    ),
    "anthropic": ProviderInfo(
        "anthropic",
        "messages",
        "ANTHROPIC_API_KEY",
        "ANTHROPIC_BASE_URL",
        ("messages",),
        label="Anthropic (Messages API)",
    ),
    "google": ProviderInfo(
        "google",
        "gemini",
        "GEMINI_API_KEY",
        "GOOGLE_GEMINI_BASE_URL",
        ("gemini",),
        label="Google Gemini (google-genai)",
        api_key_env_fallback="GOOGLE_API_KEY",
    ),
    "deepseek": ProviderInfo(
        "deepseek",
        "chat",
        "DEEPSEEK_API_KEY",
        "DEEPSEEK_BASE_URL",
        ("chat",),
        default_base_url="https://api.deepseek.com/v1",
        dialect="deepseek",
        label="DeepSeek",
    ),
    "xai": ProviderInfo(
        "xai",
        "chat",
        "XAI_API_KEY",
        "XAI_BASE_URL",
        ("chat",),
        default_base_url="https://api.x.ai/v1",
        dialect="xai",
        label="xAI (Grok)",
    ),
    "openrouter": ProviderInfo(
        "openrouter",
        "chat",
        "OPENROUTER_API_KEY",
        "OPENROUTER_BASE_URL",
        ("chat",),
        default_base_url="https://openrouter.ai/api/v1",
        dialect="openrouter",
        label="OpenRouter",
    ),
    "together": ProviderInfo(
        "together",
        "chat",
        "TOGETHER_API_KEY",
        "TOGETHER_BASE_URL",
        ("chat",),
        default_base_url="https://api.together.xyz/v1",
        dialect="together",
        label="Together AI",
    ),
    "vllm": ProviderInfo(
        "local",
        "chat",
        "VLLM_API_KEY",
        "VLLM_BASE_URL",
        ("chat",),
        default_base_url="http://127.0.0.1:8000/v1",
        dialect="compat",
        key_required=False,
        label=f"vLLM ({_LOCAL})",
    ),
    "llamacpp": ProviderInfo(
        "local",
        "chat",
        "LLAMACPP_API_KEY",
        "LLAMACPP_BASE_URL",
        ("chat",),
        default_base_url="http://127.0.0.1:8080/v1",
        dialect="compat",
        key_required=False,
        label=f"llama.cpp server ({_LOCAL})",
    ),
    "ollama": ProviderInfo(
        "local",
        "chat",
        "OLLAMA_API_KEY",
        "OLLAMA_BASE_URL",
        ("chat",),
        default_base_url="http://127.0.0.1:11434/v1",
        dialect="compat",
        key_required=False,
        label=f"Ollama ({_LOCAL})",
    ),
}

#: The key sent to a local server when none is set (they accept any).
LOCAL_PLACEHOLDER_KEY = "no-key-needed"

_OFFICIAL_HOSTS = {"openai": ("api.openai.com",)}


def dialect_for(provider: str, base_url: str | None) -> str:
    """The dialect of ``provider`` reached at ``base_url`` (None: its default endpoint).

    OpenAI's dialect holds only on OpenAI's own host; ``openai/MODEL`` pointed anywhere else is an
    OpenAI-compatible server (``compat``), which is sent the output limit in every field such servers
    read.
    """
    info = _info(provider)
    if info.dialect == "openai" and base_url:
        from urllib.parse import urlsplit

        host = (urlsplit(base_url).hostname or "").lower()
        if host not in _OFFICIAL_HOSTS["openai"]:
            return "compat"
    return info.dialect


#: Keys an alias may set, with the types they accept.
ALIAS_KEYS: dict[str, tuple[type, ...]] = {
    "model": (str,),
    "api": (str,),
    "reasoning_effort": (str,),
    "thinking_budget": (int,),
    "max_output_tokens": (int,),
    "temperature": (int, float),
    "base_url": (str,),
    "extra_body": (dict,),
    "streaming": (str,),
    "image_tokens": (int,),
}

_TILES_4O = ImageRule("tiles", base=85, per_unit=170)
_TILES_4O_MINI = ImageRule("tiles", base=2833, per_unit=5667)
_TILES_O = ImageRule("tiles", base=75, per_unit=150)
_TILES_5 = ImageRule("tiles", base=70, per_unit=140)
_CLAUDE = ImageRule("pixels", cap=1750)
_GEMINI_2 = ImageRule("gemini", cap=258)
_GEMINI_3 = ImageRule("gemini", cap=1120)

#: Which models take images, and how each bills one (an upper bound; docs/providers.md, images), by
#: price provider and model id. An id matches an entry when it is the entry, or the entry plus a
#: snapshot suffix (``-2024-08-06``, ``-20250514``, ``-latest``, ``-preview``). ``None``: text only.
#: An id that only starts with an entry (``gpt-5.3-mini``, ``o3-pro``) takes images at its provider's
#: worst case (:data:`_WORST_RULE`: a new variant may bill more); an id that matches nothing is text
#: only. An alias's ``image_tokens = N`` declares that a model takes images at most N tokens each.
#: Sources: OpenAI's vision guide (tile and patch rules per model), Anthropic's vision guide
#: (``width * height / 750``, images resized below about 1.15 megapixels: at most 784x1568 = 1,640
#: tokens; 1,750 kept), Gemini's token guide (258 per 768-pixel tile; Gemini 3 media resolution
#: high: 1,120).
IMAGE_RULES: dict[str, dict[str, ImageRule | None]] = {
    "openai": {
        "gpt-4o": _TILES_4O,
        "chatgpt-4o": _TILES_4O,
        "gpt-4o-mini": _TILES_4O_MINI,
        "gpt-4o-audio": None,
        "gpt-4o-realtime": None,
        "gpt-4o-mini-audio": None,
        "gpt-4o-mini-realtime": None,
        "gpt-4.1": _TILES_4O,
        "gpt-4.1-mini": ImageRule("patches", per_unit=1.62),
        "gpt-4.1-nano": ImageRule("patches", per_unit=2.46),
        "gpt-4.5": _TILES_4O,
        "gpt-4-turbo": _TILES_4O,
        "o1": _TILES_O,
        "o1-pro": _TILES_O,
        "o1-mini": None,
        "o1-preview": None,
        "o3": _TILES_O,
        "o3-mini": None,
        "o4-mini": ImageRule("patches", per_unit=1.72),
        "gpt-5": _TILES_5,
        "gpt-5-pro": _TILES_5,
        "gpt-5-chat": _TILES_5,
        "gpt-5.1": _TILES_5,
        "gpt-5.2": _TILES_5,
        "gpt-5-mini": ImageRule("patches", per_unit=1.62),
        "gpt-5-nano": ImageRule("patches", per_unit=2.46),
    },
    "anthropic": {
        "claude-3-opus": _CLAUDE,
        "claude-3-sonnet": _CLAUDE,
        "claude-3-haiku": _CLAUDE,
        "claude-3-5-sonnet": _CLAUDE,
        "claude-3-5-haiku": _CLAUDE,
        "claude-3-7-sonnet": _CLAUDE,
        "claude-sonnet-4": _CLAUDE,
        "claude-sonnet-4-0": _CLAUDE,
        "claude-opus-4": _CLAUDE,
        "claude-opus-4-0": _CLAUDE,
        "claude-opus-4-1": _CLAUDE,
        "claude-sonnet-4-5": _CLAUDE,
        "claude-haiku-4-5": _CLAUDE,
        "claude-": ImageRule("pixels", cap=4800),  # newer Claude models read larger images
    },
    "google": {
        "gemini-2.0-flash": _GEMINI_2,
        "gemini-2.0-flash-lite": _GEMINI_2,
        "gemini-2.5-pro": _GEMINI_2,
        "gemini-2.5-flash": _GEMINI_2,
        "gemini-2.5-flash-lite": _GEMINI_2,
        "gemini-3-pro": _GEMINI_3,
        "gemini-3-flash": _GEMINI_3,
        "gemini-3.1-pro": _GEMINI_3,
        "gemini-": ImageRule("gemini", cap=2240),
    },
}

#: What a model that only starts with a known family's id is reserved at, per provider.
_WORST_RULE: dict[str, ImageRule] = {
    "openai": _TILES_4O_MINI,
    "anthropic": ImageRule("pixels", cap=4800),
    "google": ImageRule("gemini", cap=2240),
}

_SNAPSHOT = re.compile(r"(-\d{4}-\d{2}-\d{2}|-\d{8}|-latest|-preview)*")


def image_rule_for(provider: str, model: str) -> ImageRule | None:
    """The image rule of a model (``provider`` is the price provider), or None: text only."""
    rules = IMAGE_RULES.get(provider, {})
    best = max((p for p in rules if model.startswith(p)), key=len, default=None)
    if best is None:
        return None
    rule = rules[best]
    if rule is None or best.endswith("-") or _SNAPSHOT.fullmatch(model[len(best) :]):
        return rule
    return _WORST_RULE.get(provider, rule)


#: Values of the ``streaming`` alias key (see :attr:`harness.types.ModelSpec.streaming`).
STREAMING_MODES = ("auto", "always", "never")

_USE_MAX_OUT = "set max_output_tokens in the alias (or --max-output-tokens) instead"
_USE_THINKING = "set thinking_budget in the alias instead (it must stay below the output limit)"
_USE_EFFORT = "set reasoning_effort in the alias instead"
_REMOVE = "remove it (tollbench sets it itself, or it is not supported under a budget)"

#: ``extra_body`` keys that change what a call can be billed, and the fix the error names. They would
#: override the output limit the reservation assumed (``max_tokens`` ...), multiply the output (``n``),
#: select a dearer price (``service_tier``, ``speed``, ``inference_geo``, ``model``), drop the usage
#: report (``stream``, ``stream_options``), bill other token kinds or per-use fees (``audio``,
#: ``prediction``, ``container``, ``mcp_servers``, ``web_search_options``), or bypass the
#: bounded reasoning settings. Refused when a models file is loaded (docs/design.md invariants 1 and 11).
BILLING_EXTRA_BODY_KEYS: dict[str, str] = {
    "max_tokens": _USE_MAX_OUT,
    "max_completion_tokens": _USE_MAX_OUT,
    "max_output_tokens": _USE_MAX_OUT,
    "max_thinking_tokens": _USE_THINKING,
    "thinking": _USE_THINKING,
    "budget_tokens": _USE_THINKING,
    "thinking_budget": _USE_THINKING,
    "reasoning": _USE_EFFORT,
    "reasoning_effort": _USE_EFFORT,
    "output_config": _USE_EFFORT,
    "model": "set the alias's model instead (the price is looked up for that model)",
    "n": _REMOVE,
    "best_of": _REMOVE,
    "service_tier": _REMOVE,
    "speed": _REMOVE,
    "inference_geo": _REMOVE,
    "stream": _REMOVE,
    "stream_options": _REMOVE,
    "background": _REMOVE,
    "prediction": _REMOVE,
    "audio": _REMOVE,
    "modalities": _REMOVE,
    "container": _REMOVE,
    "mcp_servers": _REMOVE,
    "web_search_options": _REMOVE,
}

#: Tool types the client runs itself (the provider bills only their tokens); any other ``type`` is a
#: provider-hosted tool with fees of its own (web search, code execution, file search, ...).
_CLIENT_TOOL_TYPES = frozenset({"function", "custom"})


def non_finite_path(value: object, path: str = "") -> str | None:
    """The dotted path of the first NaN or infinite float inside ``value`` (dicts and lists), or None."""
    if isinstance(value, float):
        return None if math.isfinite(value) else path
    if isinstance(value, Mapping):
        for k, v in value.items():
            found = non_finite_path(v, f"{path}.{k}" if path else str(k))
            if found is not None:
                return found
    elif isinstance(value, list | tuple):
        for i, v in enumerate(value):
            found = non_finite_path(v, f"{path}[{i}]")
            if found is not None:
                return found
    return None


def check_extra_body(extra: Mapping[str, Any], *, model: str, source: str = "") -> None:
    """Refuse ``extra_body`` content that would change what the call can be billed.

    Args:
        extra: the ``extra_body`` table.
        model: the model or alias name (for the message).
        source: the file it came from (for the message), if any.

    Raises:
        harness.errors.DataError: a key of :data:`BILLING_EXTRA_BODY_KEYS`, a provider-hosted tool,
            or a NaN/infinite number; one line naming the key, the model and the fix.
    """
    where = f"{source}: " if source else ""
    for key in extra:
        fix = BILLING_EXTRA_BODY_KEYS.get(key)
        if fix is not None:
            raise DataError(
                f"{where}models.{model!r}.extra_body.{key} changes what the call can be billed, so the "
                f"budget could not bound it; {fix}"
            )
    tools = extra.get("tools")
    if isinstance(tools, list):
        for i, tool in enumerate(tools):
            kind = tool.get("type") if isinstance(tool, Mapping) else None
            if isinstance(kind, str) and kind not in _CLIENT_TOOL_TYPES:
                raise DataError(
                    f"{where}models.{model!r}.extra_body.tools[{i}] is a provider-hosted tool "
                    f"({kind!r}) billed per use, which the budget cannot bound; remove it (only "
                    "function tools are allowed)"
                )
    bad = non_finite_path(extra)
    if bad is not None:
        raise DataError(
            f"{where}models.{model!r}.extra_body.{bad} is not a finite number; use a plain number"
        )


BUILTIN_ALIASES: dict[str, dict[str, Any]] = {
    "openai/o3-mini-low": {"model": "openai/o3-mini", "reasoning_effort": "low"},
    "openai/o3-mini-high": {"model": "openai/o3-mini", "reasoning_effort": "high"},
    "openai/o4-mini-high": {"model": "openai/o4-mini", "reasoning_effort": "high"},
    "openai/o3-high": {"model": "openai/o3", "reasoning_effort": "high"},
    "anthropic/claude-sonnet-4-5-thinking": {"model": "anthropic/claude-sonnet-4-5", "thinking_budget": 8000},
    "anthropic/claude-3-7-sonnet-thinking": {
        "model": "anthropic/claude-3-7-sonnet-latest",
        "thinking_budget": 8000,
    },
    "anthropic/claude-haiku-4-5-thinking": {"model": "anthropic/claude-haiku-4-5", "thinking_budget": 8000},
}

_MAX_ALIAS_DEPTH = 8


def _providers_hint() -> str:
    return ", ".join(sorted(PROVIDERS))


def default_alias_file(env: Mapping[str, str] | None = None) -> Path:
    """``$TOLLBENCH_MODELS``, else ``$XDG_CONFIG_HOME/tollbench/models.toml`` (``~/.config`` by default)."""
    e = os.environ if env is None else env
    explicit = e.get("TOLLBENCH_MODELS")
    if explicit:
        return Path(explicit).expanduser()
    config_home = e.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(config_home) / "tollbench" / "models.toml"


def _validate_alias(name: str, entry: object, source: str) -> dict[str, Any]:
    if not isinstance(entry, Mapping):
        raise DataError(f"{source}: models.{name!r} must be a table")
    out: dict[str, Any] = {}
    for key, value in entry.items():
        types = ALIAS_KEYS.get(key)
        if types is None:
            allowed = ", ".join(ALIAS_KEYS)
            raise DataError(f"{source}: models.{name!r} has unknown key {key!r} (allowed: {allowed})")
        if isinstance(value, bool) or not isinstance(value, types):
            want = " or ".join(t.__name__ for t in types)
            raise DataError(f"{source}: models.{name!r}.{key} must be {want}, not {type(value).__name__}")
        out[key] = value
    if "model" not in out:
        raise DataError(f"{source}: models.{name!r} needs a 'model' (for example \"openai/o3-mini\")")
    for key in ("thinking_budget", "max_output_tokens", "image_tokens"):
        if key in out and out[key] <= 0:
            raise DataError(f"{source}: models.{name!r}.{key} must be positive")
    if "temperature" in out:
        t = out["temperature"]
        if not math.isfinite(t) or not 0 <= t <= 2:
            raise DataError(
                f"{source}: models.{name!r}.temperature = {t!r} must be a finite number from 0 to 2; "
                "fix it or remove the key"
            )
    if "extra_body" in out:
        check_extra_body(out["extra_body"], model=name, source=source)
    if "streaming" in out and out["streaming"] not in STREAMING_MODES:
        raise DataError(
            f"{source}: models.{name!r}.streaming = {out['streaming']!r} must be one of "
            + ", ".join(STREAMING_MODES)
        )
    return out


def _read_alias_file(path: Path) -> dict[str, dict[str, Any]]:
    try:
        with path.open("rb") as fh:
            data = tomllib.load(fh)
    except FileNotFoundError:
        raise DataError(f"{path}: model alias file not found") from None
    except OSError as exc:
        raise DataError(f"{path}: cannot read model alias file ({exc.strerror})") from None
    except tomllib.TOMLDecodeError as exc:
        raise DataError(f"{path}: malformed TOML: {exc}") from None
    extra = set(data) - {"models"}
    if extra:
        raise DataError(
            f'{path}: unexpected top-level key(s) {sorted(extra)}; put aliases under [models."NAME"]'
        )
    models = data.get("models", {})
    if not isinstance(models, dict):
        raise DataError(f"{path}: 'models' must be a table of aliases")
    return {name: _validate_alias(name, entry, str(path)) for name, entry in models.items()}


def load_aliases(
    path: Path | None = None, *, env: Mapping[str, str] | None = None
) -> dict[str, dict[str, Any]]:
    """Built-in aliases, overlaid by the user's default file, overlaid by ``path``.

    Args:
        path: an alias file given explicitly (it must exist).
        env: environment to read ``TOLLBENCH_MODELS`` / ``XDG_CONFIG_HOME`` from (default ``os.environ``).

    Raises:
        harness.errors.DataError: a file is malformed (the message names it), or ``path`` or
            ``$TOLLBENCH_MODELS`` does not exist.
    """
    aliases: dict[str, dict[str, Any]] = {k: dict(v) for k, v in BUILTIN_ALIASES.items()}
    e = os.environ if env is None else env
    default = default_alias_file(e)
    if e.get("TOLLBENCH_MODELS") or default.is_file():
        aliases.update(_read_alias_file(default))
    if path is not None:
        aliases.update(_read_alias_file(path))
    return aliases


def _split(name: str, *, origin: str) -> tuple[str, str]:
    provider, sep, model = name.partition("/")
    if not sep or not provider or not model or any(c.isspace() for c in name):
        raise UnknownModel(
            f"unknown model {origin!r}: use PROVIDER/MODEL with PROVIDER one of {_providers_hint()}, "
            "or an alias from models.toml"
        )
    if provider not in PROVIDERS:
        raise UnknownModel(
            f"unknown provider {provider!r} in {origin!r}: use one of {_providers_hint()} "
            "(an OpenAI-compatible server is openai/MODEL with --base-url)"
        )
    return provider, model


def resolve_model(
    name: str,
    *,
    aliases: Mapping[str, Mapping[str, Any]] | None = None,
    base_url: str | None = None,
) -> ModelSpec:
    """Resolve a model id or alias to a :class:`ModelSpec`.

    Aliases may point at other aliases; the outer alias's parameters win. ``name`` stays the name the
    user typed (what reports show).

    Args:
        name: ``provider/model`` or an alias name.
        aliases: alias table, usually :func:`load_aliases`; None means the built-ins only (no file I/O).
        base_url: an endpoint that overrides the alias's ``base_url`` (``--base-url``).

    Raises:
        harness.errors.UnknownModel: malformed id, unknown provider, alias loop, or an ``api`` the
            provider does not speak; the one-line message lists the valid providers.
        harness.errors.ConfigError: billing-relevant ``extra_body`` (see :func:`check_extra_body`) or
            a non-finite temperature.
    """
    table: Mapping[str, Mapping[str, Any]] = BUILTIN_ALIASES if aliases is None else aliases
    params: dict[str, Any] = {}
    current = name.strip()
    seen: list[str] = []
    while current in table:
        if current in seen or len(seen) >= _MAX_ALIAS_DEPTH:
            raise UnknownModel(f"alias loop resolving {name!r}: {' -> '.join([*seen, current])}")
        seen.append(current)
        entry = table[current]
        for key, value in entry.items():
            if key != "model":
                params.setdefault(key, value)
        target = entry.get("model")
        if not isinstance(target, str) or not target:
            raise UnknownModel(f"alias {current!r} has no 'model'")
        if target == current:
            break
        current = target
    provider, model = _split(current, origin=name)
    info = PROVIDERS[provider]
    api = params.get("api", info.default_api)
    if api not in info.apis:
        raise UnknownModel(
            f"{name!r}: provider {provider} does not speak api {api!r}; use one of {', '.join(info.apis)}"
        )
    extra = params.get("extra_body") or {}
    if not isinstance(extra, Mapping):
        raise ConfigError(f"{name!r}: extra_body must be a table")
    check_extra_body(extra, model=name.strip())
    temperature = params.get("temperature")
    if temperature is not None and (
        isinstance(temperature, bool)
        or not isinstance(temperature, int | float)
        or not math.isfinite(temperature)
    ):
        raise ConfigError(f"{name!r}: temperature {temperature!r} must be a finite number")
    streaming = params.get("streaming", "auto")
    if streaming not in STREAMING_MODES:
        raise ConfigError(f"{name!r}: streaming {streaming!r} must be one of {', '.join(STREAMING_MODES)}")
    url = base_url if base_url is not None else params.get("base_url")
    image_tokens = params.get("image_tokens")
    if image_tokens is not None and (
        isinstance(image_tokens, bool) or not isinstance(image_tokens, int) or image_tokens <= 0
    ):
        raise ConfigError(f"{name!r}: image_tokens {image_tokens!r} must be a positive whole number")
    image_rule = (
        ImageRule("fixed", cap=image_tokens)
        if image_tokens is not None
        else image_rule_for(info.price_provider, model)
    )
    return ModelSpec(
        name=name.strip(),
        provider=provider if provider != "openai-responses" else "openai",
        api=api,
        model=model,
        reasoning_effort=params.get("reasoning_effort"),
        thinking_budget=params.get("thinking_budget"),
        max_output_tokens=params.get("max_output_tokens"),
        temperature=float(temperature) if temperature is not None else None,
        base_url=url,
        extra_body=dict(extra),
        image_rule=image_rule,
        dialect=dialect_for(provider, url),
        streaming=streaming,
    )


def provider_info(provider: str) -> ProviderInfo:
    """The registry entry of a model id's ``provider`` part.

    Raises:
        harness.errors.UnknownModel: unknown provider.
    """
    return _info(provider)


def price_provider(provider: str) -> str:
    """The price table's provider for a model id's ``provider`` part (``vllm`` -> ``local``)."""
    return _info(provider).price_provider


def default_base_url(provider: str) -> str | None:
    """Where ``provider``'s requests go when no base URL is given (None: its SDK's default)."""
    return _info(provider).default_base_url


def base_url_env(provider: str) -> str:
    """The environment variable naming a custom endpoint for ``provider``."""
    return _info(provider).base_url_env


def _info(provider: str) -> ProviderInfo:
    info = PROVIDERS.get(provider)
    if info is None:
        raise UnknownModel(f"unknown provider {provider!r}: use one of {_providers_hint()}")
    return info


def api_key_for(provider: str, env: Mapping[str, str] | None = None) -> str | None:
    """The API key for ``provider`` from the environment, or None when unset or blank.

    Raises:
        harness.errors.UnknownModel: unknown provider.
    """
    e = os.environ if env is None else env
    info = _info(provider)
    value = e.get(info.api_key_env, "").strip()
    if not value and info.api_key_env_fallback:
        value = e.get(info.api_key_env_fallback, "").strip()
    if not value and not info.key_required:
        return LOCAL_PLACEHOLDER_KEY
    return value or None


def require_api_key(provider: str, env: Mapping[str, str] | None = None) -> str:
    """Like :func:`api_key_for` but raises when the key is missing.

    Raises:
        harness.errors.MissingApiKey: with a one-line message naming the variable to set.
    """
    key = api_key_for(provider, env)
    if key is None:
        var = _info(provider).api_key_env
        raise MissingApiKey(f"No API key for {provider}: set {var} (or use --sim for the simulator)")
    return key
