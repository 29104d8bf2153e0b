"""harness.models: model ids, aliases with parameters (built-in and from files), API keys."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from harness.errors import DataError, MissingApiKey, UnknownModel
from harness.models import PROVIDERS, api_key_for, load_aliases, require_api_key, resolve_model
from harness.types import ModelSpec


def test_plain_ids() -> None:
    assert resolve_model("openai/o3-mini") == ModelSpec(
        name="openai/o3-mini", provider="openai", api="chat", model="o3-mini", dialect="openai"
    )
    spec = resolve_model("openai-responses/o3")
    assert (spec.provider, spec.api, spec.model) == ("openai", "responses", "o3")
    spec = resolve_model("anthropic/claude-sonnet-4-5")
    assert (spec.provider, spec.api, spec.model) == ("anthropic", "messages", "claude-sonnet-4-5")


def test_model_ids_may_contain_slashes() -> None:
    spec = resolve_model("openai/Qwen/Qwen3-8B", base_url="http://127.0.0.1:8000/v1")
    assert spec.model == "Qwen/Qwen3-8B"
    assert spec.base_url == "http://127.0.0.1:8000/v1"


def test_providers_table() -> None:
    assert PROVIDERS["openai"].api_key_env == "OPENAI_API_KEY"
    assert PROVIDERS["openai"].base_url_env == "OPENAI_BASE_URL"
    assert PROVIDERS["anthropic"].default_api == "messages"
    assert PROVIDERS["anthropic"].base_url_env == "ANTHROPIC_BASE_URL"
    assert PROVIDERS["openai-responses"].price_provider == "openai"
    assert PROVIDERS["openai-responses"].default_api == "responses"


def test_builtin_aliases() -> None:
    spec = resolve_model("openai/o3-mini-high")
    assert spec == ModelSpec(
        name="openai/o3-mini-high",
        provider="openai",
        api="chat",
        model="o3-mini",
        reasoning_effort="high",
        dialect="openai",
    )
    assert resolve_model("openai/o4-mini-high").model == "o4-mini"
    spec = resolve_model("anthropic/claude-sonnet-4-5-thinking")
    assert spec.model == "claude-sonnet-4-5" and spec.thinking_budget == 8000 and spec.api == "messages"


@pytest.mark.parametrize("name", ["o3-mini", "", "openai/", "/o3", "openai o3", "foo/bar"])
def test_bad_names(name: str) -> None:
    with pytest.raises(UnknownModel) as info:
        resolve_model(name)
    msg = str(info.value)
    assert "\n" not in msg
    assert "anthropic" in msg and "openai" in msg and "openai-responses" in msg


def test_api_provider_mismatch() -> None:
    aliases = {"x": {"model": "anthropic/claude", "api": "chat"}}
    with pytest.raises(UnknownModel, match="does not speak"):
        resolve_model("x", aliases=aliases)


def test_alias_chain_outer_wins_and_loops_fail() -> None:
    aliases: dict[str, dict[str, Any]] = {
        "base": {"model": "openai/o3", "reasoning_effort": "low", "max_output_tokens": 1000},
        "fast": {"model": "base", "reasoning_effort": "high", "api": "responses"},
        "loop-a": {"model": "loop-b"},
        "loop-b": {"model": "loop-a"},
    }
    spec = resolve_model("fast", aliases=aliases)
    assert (spec.name, spec.model, spec.api) == ("fast", "o3", "responses")
    assert spec.reasoning_effort == "high" and spec.max_output_tokens == 1000
    with pytest.raises(UnknownModel, match="loop"):
        resolve_model("loop-a", aliases=aliases)


def test_alias_may_decorate_a_real_id() -> None:
    aliases = {"openai/o3-mini": {"model": "openai/o3-mini", "max_output_tokens": 50}}
    spec = resolve_model("openai/o3-mini", aliases=aliases)
    assert spec.model == "o3-mini" and spec.max_output_tokens == 50


def test_base_url_argument_overrides_alias() -> None:
    aliases = {"local": {"model": "openai/m", "base_url": "http://a/v1"}}
    assert resolve_model("local", aliases=aliases).base_url == "http://a/v1"
    assert resolve_model("local", aliases=aliases, base_url="http://b/v1").base_url == "http://b/v1"


ALIAS_FILE = """
[models."openai/o3-mini-xhigh"]
model = "openai/o3-mini"
reasoning_effort = "xhigh"
max_output_tokens = 32000

[models."local/qwen"]
model = "openai/Qwen/Qwen3-8B"
base_url = "http://127.0.0.1:8000/v1"
temperature = 0
extra_body = { top_k = 20 }

[models."openai/o3-mini-high"]
model = "openai/o3-mini"
reasoning_effort = "medium"
"""


def test_load_aliases_from_file(tmp_path: Path) -> None:
    path = tmp_path / "models.toml"
    path.write_text(ALIAS_FILE)
    aliases = load_aliases(path)
    assert "anthropic/claude-sonnet-4-5-thinking" in aliases  # built-ins kept
    spec = resolve_model("openai/o3-mini-xhigh", aliases=aliases)
    assert spec.reasoning_effort == "xhigh" and spec.max_output_tokens == 32000
    spec = resolve_model("local/qwen", aliases=aliases)
    assert spec.model == "Qwen/Qwen3-8B" and spec.base_url == "http://127.0.0.1:8000/v1"
    assert spec.temperature == 0.0 and dict(spec.extra_body) == {"top_k": 20}
    # the file overrides a built-in of the same name
    assert resolve_model("openai/o3-mini-high", aliases=aliases).reasoning_effort == "medium"


def test_default_user_file_and_env_override(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "cfg"
    (config / "tollbench").mkdir(parents=True)
    (config / "tollbench" / "models.toml").write_text('[models.mine]\nmodel = "anthropic/claude-x"\n')
    monkeypatch.setenv("XDG_CONFIG_HOME", str(config))
    monkeypatch.delenv("TOLLBENCH_MODELS", raising=False)
    assert resolve_model("mine", aliases=load_aliases()).model == "claude-x"

    other = tmp_path / "other.toml"
    other.write_text('[models.theirs]\nmodel = "openai/gpt-x"\n')
    monkeypatch.setenv("TOLLBENCH_MODELS", str(other))
    aliases = load_aliases()
    assert "theirs" in aliases and "mine" not in aliases

    monkeypatch.setenv("TOLLBENCH_MODELS", str(tmp_path / "missing.toml"))
    with pytest.raises(DataError, match="missing.toml"):
        load_aliases()


def test_no_user_file_gives_builtins(tmp_path: Path) -> None:
    aliases = load_aliases(env={"XDG_CONFIG_HOME": str(tmp_path / "nothing")})
    assert "openai/o3-mini-high" in aliases


@pytest.mark.parametrize(
    ("content", "match"),
    [
        ("[models.x\nmodel = 1", "malformed TOML"),
        ('[models.x]\nmodel = "openai/a"\nreasoning = "high"\n', "unknown key 'reasoning'"),
        ("[models.x]\nreasoning_effort = 'high'\n", "needs a 'model'"),
        ('[models.x]\nmodel = "openai/a"\nthinking_budget = "lots"\n', "thinking_budget must be int"),
        ('[models.x]\nmodel = "openai/a"\nmax_output_tokens = 0\n', "must be positive"),
        ('[models.x]\nmodel = "openai/a"\ntemperature = true\n', "temperature"),
        ('[aliases.x]\nmodel = "openai/a"\n', "unexpected top-level"),
        ("models = 3\n", "must be a table"),
        ('[models]\nx = "openai/a"\n', "must be a table"),
    ],
)
def test_malformed_alias_files(tmp_path: Path, content: str, match: str) -> None:
    path = tmp_path / "bad-models.toml"
    path.write_text(content)
    with pytest.raises(DataError, match=match) as info:
        load_aliases(path)
    assert "bad-models.toml" in str(info.value)


def test_missing_explicit_file(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="not found"):
        load_aliases(tmp_path / "nope.toml")


def test_api_keys_from_environment_only() -> None:
    env = {"OPENAI_API_KEY": " sk-abc ", "ANTHROPIC_API_KEY": ""}
    assert api_key_for("openai", env) == "sk-abc"
    assert api_key_for("openai-responses", env) == "sk-abc"
    assert api_key_for("anthropic", env) is None
    assert api_key_for("anthropic", {}) is None
    with pytest.raises(UnknownModel):
        api_key_for("mistral", env)
    assert require_api_key("openai", env) == "sk-abc"
    with pytest.raises(MissingApiKey, match="ANTHROPIC_API_KEY"):
        require_api_key("anthropic", env)


def test_api_key_reads_os_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-zzz")
    assert api_key_for("anthropic") == "sk-ant-zzz"
