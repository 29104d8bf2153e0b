"""adapters.create_adapter: dispatch, lazy SDK import, protocol conformance, SDK client settings."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import httpx2
import pytest
from adapters_testkit import spec_for

from adapters import ADAPTERS, create_adapter
from harness.errors import UnknownModel
from harness.types import Adapter, Message, Request, input_tokens_upper_bound

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.anyio


def test_importing_adapters_imports_no_sdk() -> None:
    code = (
        "import sys, adapters, harness.models\n"
        "bad = [m for m in ('openai', 'anthropic', 'httpx2', 'google.genai') if m in sys.modules]\n"
        "assert not bad, bad\n"
        "print(adapters.__file__)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=False, timeout=60
    )
    assert out.returncode == 0, out.stderr
    assert Path(out.stdout.strip()).resolve().parent == ROOT / "adapters"


@pytest.mark.parametrize(
    ("api", "cls_name", "provider"),
    [
        ("chat", "OpenAIChatAdapter", "openai"),
        ("responses", "OpenAIResponsesAdapter", "openai"),
        ("messages", "AnthropicMessagesAdapter", "anthropic"),
    ],
)
async def test_dispatch_and_protocol(api: str, cls_name: str, provider: str) -> None:
    adapter = create_adapter(
        spec_for(api), api_key="sk-x", base_url="http://127.0.0.1:9", stall_timeout_s=7.5
    )
    try:
        assert type(adapter).__name__ == cls_name
        assert isinstance(adapter, Adapter)
        assert adapter.api == api and adapter.provider == provider
        client = adapter._client  # type: ignore[attr-defined]
        assert client.max_retries == 0
        assert client.api_key == "sk-x"
        assert str(client.base_url).startswith("http://127.0.0.1:9")
        timeout = client.timeout
        assert isinstance(timeout, httpx2.Timeout)
        assert timeout.read == 7.5 and timeout.connect == 10.0
        req = Request(model="m", messages=(Message("user", "héllo"),), max_output_tokens=10)
        assert adapter.input_tokens_upper_bound(req) == input_tokens_upper_bound(req.messages)
    finally:
        await adapter.aclose()


async def test_spec_base_url_used_unless_overridden() -> None:
    spec = spec_for("chat", base_url="http://127.0.0.1:1111/v1")
    a = create_adapter(spec, api_key="sk-x")
    b = create_adapter(spec, api_key="sk-x", base_url="http://127.0.0.1:2222/v1")
    try:
        assert "1111" in str(a._client.base_url)  # type: ignore[attr-defined]
        assert "2222" in str(b._client.base_url)  # type: ignore[attr-defined]
    finally:
        await a.aclose()
        await b.aclose()


def test_unknown_api() -> None:
    with pytest.raises(UnknownModel, match="unknown api 'completions'"):
        create_adapter(spec_for("completions"), api_key="sk-x")
    assert set(ADAPTERS) == {"chat", "responses", "messages", "gemini"}
