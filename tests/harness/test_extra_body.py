"""A models file's ``extra_body`` cannot defeat the cap (issue 10, defect 2).

Keys that change what a call can be billed (the output limit, thinking, ``n``, the service tier, the
model, streaming, reasoning overrides, paid server tools, ...) are refused when the file is loaded,
with one line naming the key, the model and the fix (exit 2, nothing recorded). Any other content is
sent too, so the reservation's input bound counts it.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest

_TESTS = Path(__file__).resolve().parents[1]
if str(_TESTS) not in sys.path:
    sys.path.insert(0, str(_TESTS))

from helpers.scripted_server import ScriptedServer  # noqa: E402

from adapters import create_adapter  # noqa: E402
from harness.cli.main import main  # noqa: E402
from harness.errors import ConfigError, DataError  # noqa: E402
from harness.models import load_aliases, resolve_model  # noqa: E402
from harness.types import Message, ModelSpec, Request  # noqa: E402

# key, TOML value, a word the fix must mention
BILLING_KEYS: list[tuple[str, str, str]] = [
    ("max_tokens", "100000", "max_output_tokens"),
    ("max_completion_tokens", "100000", "max_output_tokens"),
    ("max_output_tokens", "100000", "max_output_tokens"),
    ("max_thinking_tokens", "64000", "thinking_budget"),
    ("thinking", '{type = "enabled", budget_tokens = 60000}', "thinking_budget"),
    ("n", "8", "remove"),
    ("best_of", "4", "remove"),
    ("service_tier", '"priority"', "remove"),
    ("speed", '"fast"', "remove"),
    ("stream", "false", "remove"),
    ("stream_options", "{include_usage = false}", "remove"),
    ("reasoning", '{effort = "high"}', "reasoning_effort"),
    ("reasoning_effort", '"high"', "reasoning_effort"),
    ("output_config", '{effort = "max"}', "reasoning_effort"),
    ("model", '"gpt-4.5-preview"', "model"),
    ("prediction", '{type = "content", content = "x"}', "remove"),
    ("tools", '[{type = "web_search"}]', "remove"),
]


def _models_file(tmp_path: Path, key: str, value: str, name: str = "openai/cheap") -> Path:
    path = tmp_path / "models.toml"
    path.write_text(
        f'[models."{name}"]\nmodel = "openai/gpt-4o-mini"\nextra_body = {{ {key} = {value} }}\n',
        encoding="utf-8",
    )
    return path


@pytest.mark.parametrize(("key", "value", "fix"), BILLING_KEYS, ids=[k for k, _, _ in BILLING_KEYS])
def test_billing_relevant_extra_body_key_is_refused_at_load(
    tmp_path: Path, key: str, value: str, fix: str
) -> None:
    path = _models_file(tmp_path, key, value)
    with pytest.raises(DataError) as info:
        load_aliases(path)
    msg = str(info.value)
    assert "\n" not in msg
    assert str(path) in msg and "openai/cheap" in msg and key in msg and fix in msg


@pytest.mark.parametrize(("key", "value", "fix"), BILLING_KEYS[:4], ids=[k for k, _, _ in BILLING_KEYS[:4]])
def test_cli_refuses_the_models_file_with_exit_2_and_records_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], key: str, value: str, fix: str
) -> None:
    path = _models_file(tmp_path, key, value)
    db = tmp_path / "runs.db"
    code = main(
        ["run", "demo", "-m", "openai/cheap", "--models-file", str(path), "--sim", "--budget", "0.01"]
        + ["--db", str(db)]
    )
    out, err = capsys.readouterr()
    assert code == 2
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert key in lines[0] and "openai/cheap" in lines[0] and "Traceback" not in err
    assert not db.exists()


def test_harmless_extra_body_is_still_allowed(tmp_path: Path) -> None:
    path = tmp_path / "models.toml"
    path.write_text(
        '[models."openai/cheap"]\nmodel = "openai/gpt-4o-mini"\n'
        'extra_body = { prompt_cache_key = "k", tools = [{type = "function", name = "f"}] }\n',
        encoding="utf-8",
    )
    spec = resolve_model("openai/cheap", aliases=load_aliases(path))
    assert spec.extra_body["prompt_cache_key"] == "k"


def test_programmatic_aliases_are_checked_too() -> None:
    aliases = {"openai/x": {"model": "openai/gpt-4o-mini", "extra_body": {"max_completion_tokens": 9}}}
    with pytest.raises(ConfigError, match="max_completion_tokens"):
        resolve_model("openai/x", aliases=aliases)


# -- the input bound counts what extra_body sends ------------------------------------------------

_TOOLS: list[dict[str, Any]] = [
    {
        "type": "function",
        "function": {
            "name": "lookup",
            "description": "Look a fact up. " * 200,
            "parameters": {"type": "object", "properties": {"q": {"type": "string"}}},
        },
    }
]


def _spec(api: str, extra: dict[str, Any]) -> ModelSpec:
    provider = "anthropic" if api == "messages" else "openai"
    return ModelSpec(name=f"{provider}/m", provider=provider, api=api, model="m", extra_body=extra)


def _request(extra: dict[str, Any] | None = None) -> Request:
    return Request(
        model="m",
        messages=(Message("user", "What is 6*7?"),),
        max_output_tokens=64,
        extra_body=extra or {},
    )


@pytest.mark.parametrize("api", ["chat", "responses", "messages"])
@pytest.mark.parametrize("where", ["spec", "request"])
def test_input_bound_counts_extra_body_content(api: str, where: str) -> None:
    extra = {"tools": _TOOLS, "instructions": "Be brief. " * 100}
    plain = create_adapter(_spec(api, {}), api_key="sk-x", base_url="http://127.0.0.1:9")
    rich = create_adapter(
        _spec(api, extra if where == "spec" else {}), api_key="sk-x", base_url="http://127.0.0.1:9"
    )
    req = _request(extra if where == "request" else None)
    sent = len(json.dumps(extra, ensure_ascii=False).encode("utf-8"))
    assert rich.input_tokens_upper_bound(req) >= plain.input_tokens_upper_bound(_request()) + sent


@pytest.mark.anyio
async def test_adapter_refuses_a_billing_key_before_sending() -> None:
    with ScriptedServer() as server:
        adapter = create_adapter(
            _spec("chat", {"max_completion_tokens": 100_000}), api_key="sk-x", base_url=server.url + "/v1"
        )
        try:
            with pytest.raises(ConfigError, match="max_completion_tokens"):
                await adapter.complete(_request())
        finally:
            await adapter.aclose()
        assert server.requests == []


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"
