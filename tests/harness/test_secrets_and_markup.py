"""No secrets at rest whatever their length or where they hide (docs/design.md invariant 8), and data that
looks like rich markup never breaks a table (issue 10, defects 8 and 9).

Real parts: the command line (``harness.cli.main.main``), the simulator (in-process and the ``--sim``
child process), a real SQLite file, and ``tollbench export``.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from adapters._common import redact
from harness.cli.main import main
from harness.redact import check_key_length, strip_url_credentials, strip_urls_in_text
from harness.sim.server import start_sim_process
from harness.store.engine import Redactor


def _texts(db: Path) -> str:
    """Every stored text value of every table, joined (what a reader of the file could see)."""
    con = sqlite3.connect(db)
    try:
        out = []
        for (table,) in con.execute("select name from sqlite_master where type = 'table'"):
            for row in con.execute(f'select * from "{table}"'):
                out.extend(str(v) for v in row if v is not None)
        return "\n".join(out)
    finally:
        con.close()


def _run_id(db: Path) -> str:
    con = sqlite3.connect(db)
    try:
        return str(con.execute("select id from runs order by created_at desc").fetchone()[0])
    finally:
        con.close()


# -- keys of any length ---------------------------------------------------------------------------------


@pytest.mark.parametrize("key", ["k9Zq", "k9Zq7ab", "ollama-11ch"])
def test_a_short_key_is_redacted_as_a_whole_token_and_ordinary_text_is_left_alone(key: str) -> None:
    red = Redactor({"OPENAI_API_KEY": key, "TOKENIZERS_PARALLELISM": "false"})
    assert red.text(f"Incorrect API key provided: {key}.") == "Incorrect API key provided: [redacted]."
    assert red.text(key) == "[redacted]"  # a request id read from a header that echoes the key
    glued = f"x{key}y and {key}_2"
    assert red.text(glued) == glued  # part of a longer word: not the key, left as it is
    assert red.text("answer: false") == "answer: false"  # not a key variable, too short to matter
    assert redact(f"401: key {key} rejected", (key,)) == "401: key [redacted] rejected"


def test_a_key_of_1_to_3_characters_is_refused_not_silently_kept() -> None:
    assert check_key_length("x", "OPENAI_API_KEY") is not None
    assert check_key_length("abc", "OPENAI_API_KEY") is not None
    assert check_key_length("abcd", "OPENAI_API_KEY") is None
    # and the adapters' redact still removes it where it stands alone, without mangling words
    assert redact("key x rejected; max x-axis", ("x",)) == "key [redacted] rejected; max x-axis"


def test_a_short_key_in_a_prompt_never_reaches_the_database(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    key = "k9Zq7ab"  # 7 characters: a self-hosted server's key
    monkeypatch.setenv("OPENAI_API_KEY", key)
    suite = tmp_path / "s.jsonl"
    suite.write_text(json.dumps({"prompt": f"my key is {key}, and k9Zq7abc is not", "answer": "a"}) + "\n")
    db = tmp_path / "runs.db"
    code = main(["run", str(suite), "-m", "openai/o4-mini", "--sim", "--sim-speed", "0", "--db", str(db)])
    capsys.readouterr()
    assert code == 0
    stored = _texts(db)
    assert "my key is [redacted], and k9Zq7abc is not" in stored
    assert f"{key}," not in stored


# -- credentials in base URLs ---------------------------------------------------------------------------


def test_strip_url_credentials() -> None:
    assert strip_url_credentials("https://bob:hunter2@llm.example/v1") == "https://llm.example/v1"
    assert (
        strip_url_credentials("http://h:8000/v1?api_key=abc&x=1&token=t&key=k")
        == "http://h:8000/v1?api_key=%5Bredacted%5D&x=1&token=%5Bredacted%5D&key=%5Bredacted%5D"
    )
    assert strip_url_credentials("http://localhost:8000/v1") == "http://localhost:8000/v1"
    assert strip_url_credentials("not a url") == "not a url"
    assert strip_urls_in_text("see http://u:p@h/v1?key=z, then") == "see http://h/v1?key=%5Bredacted%5D, then"


PASSWORD = "pw-S3CRET-pass"
TOKEN = "QK-TOKEN-777"


def test_base_url_credentials_are_not_stored_exported_or_printed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "runs.db"
    url = f"http://alice:{PASSWORD}@llm.example/v1?api_key={TOKEN}&x=1"
    code = main(
        ["run", "demo", "-m", "openai/o4-mini", "--limit", "1", "--sim", "--sim-speed", "0"]
        + ["--base-url", url, "--json", "--db", str(db)]
    )
    out, err = capsys.readouterr()
    assert code == 0, err
    report = json.loads(out)
    assert report["config"]["options"]["base_url"] == "http://llm.example/v1?api_key=%5Bredacted%5D&x=1"
    bundle = tmp_path / "b.jsonl"
    assert main(["export", _run_id(db), "-o", str(bundle), "--db", str(db)]) == 0
    assert main(["show", _run_id(db), "--json", "--calls", "--db", str(db)]) == 0
    shown, _ = capsys.readouterr()
    files = b"".join(p.read_bytes() for p in tmp_path.glob("runs.db*")) + bundle.read_bytes()
    for secret in (PASSWORD, TOKEN):
        assert secret not in out + err + shown
        assert secret.encode() not in files


def test_the_storage_redactor_strips_url_credentials_from_every_stored_value() -> None:
    """The second line of defence under every call row, cache key and config: a canonical request
    whose endpoint still carries credentials (``runner.endpoint()`` from ``OPENAI_BASE_URL``) is stored
    without them, and the password alone (an error message quoting it) is redacted too."""
    env = {"OPENAI_BASE_URL": f"http://alice:{PASSWORD}@llm.example/v1?token={TOKEN}"}
    red = Redactor(env)
    stored = red.json({"endpoint": env["OPENAI_BASE_URL"], "note": f"auth failed with {PASSWORD}", "n": 3})
    assert stored == {
        "endpoint": "http://llm.example/v1?token=%5Bredacted%5D",
        "note": "auth failed with [redacted]",
        "n": 3,
    }
    assert red.text(f"request id {TOKEN}") == "request id [redacted]"


# -- the --sim child process ----------------------------------------------------------------------------


def test_the_sim_child_process_inherits_no_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    secrets = {
        "OPENAI_API_KEY": "sk-proj-child-must-not-see-1",
        "ANTHROPIC_API_KEY": "sk-ant-child-must-not-see-2",
        "MY_SERVICE_TOKEN": "tok-child-must-not-see-3",
        "OPENAI_BASE_URL": "http://u:child-must-not-see-4@h/v1",
        "DB_PASSWORD": "child-must-not-see-5",
    }
    for k, v in secrets.items():
        monkeypatch.setenv(k, v)
    with start_sim_process() as proc:
        environ = Path(f"/proc/{proc.pid}/environ").read_bytes().split(b"\0")
        names = {e.split(b"=", 1)[0].decode() for e in environ if e}
        assert "PATH" in names
        assert not names & set(secrets), names & set(secrets)
        assert not any(v.encode() in e for e in environ for v in secrets.values())
        proc.invoice()  # and it still serves


# -- rich markup in data --------------------------------------------------------------------------------

MARKUP_RUN_ID = "run-[/]-[bold]x"


def test_markup_in_a_run_id_and_item_ids_never_breaks_run_runs_show_costs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "runs.db"
    suite = tmp_path / "m.jsonl"
    rows = [
        {"id": "[/]", "prompt": "q1", "answer": "a"},
        {"id": "[red]i2[/red]", "prompt": "q2", "answer": "b"},
    ]
    suite.write_text("".join(json.dumps(r) + "\n" for r in rows))
    base = ["--db", str(db)]
    code = main(
        [
            "run",
            str(suite),
            "-m",
            "openai/o4-mini",
            "--sim",
            "--sim-speed",
            "0",
            "--run-id",
            MARKUP_RUN_ID,
            *base,
        ]
    )
    out, err = capsys.readouterr()
    assert code == 0, err
    assert MARKUP_RUN_ID in out + err
    for args in (
        ["runs"],
        ["show", MARKUP_RUN_ID],
        ["show", MARKUP_RUN_ID, "--calls"],
        ["costs", "--by", "run,model,suite"],
        ["reprice", MARKUP_RUN_ID],
        ["rescore", MARKUP_RUN_ID],
    ):
        code = main([*args, *base])
        out, err = capsys.readouterr()
        assert code == 0, (args, err)
        assert "Traceback" not in err and "MarkupError" not in err
        assert MARKUP_RUN_ID in out or args[0] in ("costs",), (args, out)
        if args == ["show", MARKUP_RUN_ID, "--calls"]:
            assert "[/]" in out and "[red]i2[/red]" in out  # shown as written, not interpreted
