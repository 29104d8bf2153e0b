"""Server lifecycle, the child-process variant, loopback-only binding and the invoice's arithmetic."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import urllib.request
from decimal import Decimal
from pathlib import Path

import pytest
from openai import OpenAI

from harness.answerkey import AnswerKey, KeyEntry
from harness.errors import ConfigError
from harness.pricing.money import usd_to_nano
from harness.sim import FaultConfig, SimServer, start_sim_process
from harness.types import Usage

MSGS = [{"role": "user", "content": "Pick one.\nA) a\nB) b\nAnswer: $LETTER"}]


def test_refuses_non_loopback_bind_unless_allowed() -> None:
    with pytest.raises(ConfigError, match="loopback"):
        SimServer(host="0.0.0.0")
    with pytest.raises(ConfigError):
        SimServer(host="example.com")
    SimServer(host="0.0.0.0", allow_non_loopback=True)  # constructing is allowed; not started


def test_start_stop_idempotent_and_port_released() -> None:
    sim = SimServer()
    sim.start()
    sim.start()
    port = sim.port
    assert port > 0 and sim.openai_base_url == f"http://127.0.0.1:{port}/v1"
    with urllib.request.urlopen(sim.base_url + "/sim/health") as r:
        assert json.loads(r.read())["ok"] is True
    sim.stop()
    sim.stop()
    with pytest.raises(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
        pass


def test_injected_pricer_and_invoice_totals() -> None:
    seen: list[tuple[str, str, Usage]] = []

    def pricer(provider: str, model: str, usage: Usage) -> Decimal:
        seen.append((provider, model, usage))
        return Decimal("0.000000001") * usage.output + Decimal("0.0000000005")  # rounds up per request

    with (
        SimServer(pricer=pricer) as sim,
        OpenAI(api_key="k", base_url=sim.openai_base_url, max_retries=0) as oa,
    ):
        outs = []
        for model in ("gpt-4o-mini", "o4-mini", "gpt-4o-mini"):
            c = oa.chat.completions.create(model=model, messages=MSGS, max_completion_tokens=3000)  # type: ignore[arg-type]
            assert c.usage
            outs.append((model, c.usage.completion_tokens))
        inv = sim.invoice()
        assert [m for _, m, _ in seen] == ["gpt-4o-mini", "o4-mini", "gpt-4o-mini"]
        nanos = [n + 1 for _, n in outs]  # ceil(n + 0.5) nano-dollars each
        assert usd_to_nano(Decimal(inv["total"]["usd"])) == sum(nanos)
        assert usd_to_nano(Decimal(inv["models"]["gpt-4o-mini"]["usd"])) == nanos[0] + nanos[2]
        assert inv["total"]["tokens"]["output"] == sum(n for _, n in outs)
        assert inv["total"]["requests"] == {"total": 3, "billed": 3, "refused": 0}
        assert sum(Decimal(r["usd"]) for r in inv["requests"].values()) == Decimal(inv["total"]["usd"])
        req = urllib.request.Request(sim.base_url + "/sim/invoice/reset", data=b"", method="POST")
        urllib.request.urlopen(req).close()
        assert sim.invoice()["requests"] == {}


def test_default_pricing_uses_a_price_for_each_token_kind() -> None:
    with SimServer() as sim, OpenAI(api_key="k", base_url=sim.openai_base_url, max_retries=0) as oa:
        c = oa.chat.completions.create(model="gpt-4o-mini", messages=MSGS, max_completion_tokens=3000)  # type: ignore[arg-type]
        assert c.usage
        rec = next(iter(sim.invoice()["requests"].values()))
    # gpt-4o-mini: $0.15 / M input, $0.60 / M output (PRICING.md §4.1); harness.pricing.table must agree
    expected = (Decimal("0.15") * c.usage.prompt_tokens + Decimal("0.60") * c.usage.completion_tokens) / 10**6
    assert Decimal(rec["usd"]) == Decimal(usd_to_nano(expected)) / 10**9


def test_live_answer_key_is_used() -> None:
    key = AnswerKey()
    with (
        SimServer(seed=1, answer_key=key) as sim,
        OpenAI(api_key="k", base_url=sim.openai_base_url, max_retries=0) as oa,
    ):
        sim.answer_key.add(MSGS[0]["content"], KeyEntry("Z", "letter", ("Z", "Y")))
        answers = set()
        for _ in range(12):
            c = oa.chat.completions.create(model="o4-mini", messages=MSGS, max_completion_tokens=20000)  # type: ignore[arg-type]
            answers.add((c.choices[0].message.content or "").rsplit("Answer: ", 1)[-1])
        assert answers <= {"Z", "Y"} and "Z" in answers


def test_sim_process_lifecycle(tmp_path: Path) -> None:
    faults = tmp_path / "faults.toml"
    faults.write_text("[faults]\nerror_500 = 0.0\nretry_after_s = 0.5\n")
    proc = start_sim_process(seed=3, faults_file=faults)
    try:
        assert proc.openai_base_url.startswith("http://127.0.0.1:")
        key = AnswerKey()
        key.add(MSGS[0]["content"], KeyEntry("Q", "letter", ("Q",)))
        proc.add_answer_key(key)
        with OpenAI(api_key="k", base_url=proc.openai_base_url, max_retries=0) as oa:
            c = oa.chat.completions.with_raw_response.create(
                model="o4-mini",
                messages=MSGS,
                max_completion_tokens=20000,  # type: ignore[arg-type]
            )
            assert (c.parse().choices[0].message.content or "").endswith("Answer: Q")
            inv = proc.invoice()
            assert c.headers["x-request-id"] in inv["requests"]
            proc.set_faults(FaultConfig(error_503=1.0))
            with pytest.raises(Exception, match="503"):
                oa.chat.completions.create(model="o4-mini", messages=MSGS, max_completion_tokens=5)  # type: ignore[arg-type]
            proc.set_faults(None)
            proc.reset_invoice()
            assert proc.invoice()["requests"] == {}
    finally:
        proc.stop()
        proc.stop()
    assert proc._proc.returncode is not None


def test_main_rejects_public_bind() -> None:
    r = subprocess.run(
        [sys.executable, "-m", "harness.sim", "--host", "0.0.0.0", "--port", "0"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert r.returncode == 2 and "loopback" in r.stderr


def test_a_client_gone_while_sending_its_body_is_on_the_invoice_unbilled() -> None:
    """A process killed mid-upload: the request never reached generation, costs nothing, and is on
    the invoice (not left "in progress" forever), so reconcile can settle its reservation at $0."""
    import time
    from urllib.parse import urlparse

    with SimServer(seed=1, speed=0.0) as sim:
        url = urlparse(sim.base_url)
        assert url.hostname and url.port
        with socket.create_connection((url.hostname, url.port)) as conn:
            conn.sendall(
                b"POST /v1/chat/completions HTTP/1.1\r\nHost: sim\r\nAuthorization: Bearer sk-sim\r\n"
                b"Content-Type: application/json\r\nx-client-request-id: call-1\r\nContent-Length: 500\r\n"
                b'\r\n{"model":'
            )
            time.sleep(0.1)
        deadline = time.monotonic() + 5
        while (invoice := sim.invoice())["in_progress"] and time.monotonic() < deadline:
            time.sleep(0.02)
    assert invoice["in_progress"] == []
    (record,) = invoice["requests"].values()
    assert (record["client_request_id"], record["billed"], record["usd"]) == ("call-1", False, "0")
    assert (record["http_status"], record["fault"]) == (499, "client_disconnected")


def test_a_simulator_process_stops_when_the_process_that_started_it_is_killed() -> None:
    """`run --sim` killed with SIGKILL must not leave its simulator running forever."""
    import os
    import signal
    import time

    parent = subprocess.Popen(
        [sys.executable, "-c", "from harness.sim import start_sim_process; import sys, time\n"
         "sim = start_sim_process(); print(sim.pid, flush=True); time.sleep(60)"],
        stdout=subprocess.PIPE,
        cwd=Path(__file__).resolve().parents[2],
    )  # fmt: skip
    assert parent.stdout is not None
    child = int(parent.stdout.readline())
    os.kill(child, 0)  # running
    parent.send_signal(signal.SIGKILL)
    parent.wait(timeout=10)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        try:
            os.kill(child, 0)
        except ProcessLookupError:
            return
        # Reap it if it became our child (the subreaper case); otherwise init reaps it.
        try:
            os.waitpid(child, os.WNOHANG)
        except ChildProcessError:
            pass
        time.sleep(0.1)
    os.kill(child, signal.SIGKILL)
    raise AssertionError("the simulator outlived the process that started it")
