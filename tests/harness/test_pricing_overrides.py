"""Price files: user overrides, merge order, the merged hash, and malformed-file errors (real files)."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from harness.errors import DataError
from harness.pricing.table import ENV_VAR, PriceTable, parse_prices, user_prices_path
from harness.types import Usage

D = Decimal
M = 1_000_000


@pytest.fixture(autouse=True)
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private HOME with no user price file, and no $TOLLBENCH_PRICES."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv(ENV_VAR, raising=False)
    return home


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


OVERRIDE = """
provider = "openai"

[[models]]
model = "gpt-4o"
input = "2.00"
cached_input = "1.00"
output = "8.00"
source_url = "our negotiated contract"

[[models]]
provider = "anthropic"
model = "claude-foo"
aliases = ["claude-foo-20990101"]
input = "0.50"
output = "2.50"
[models.variants.batch]
multiplier = "0.5"
"""


def test_override_adds_a_model_and_changes_a_price(tmp_path: Path) -> None:
    bundled = PriceTable.load(user_default=False)
    f = write(tmp_path / "mine.toml", OVERRIDE)
    merged = PriceTable.load([f], user_default=False)
    assert merged.sha256 != bundled.sha256
    assert len(merged.sha256) == 64
    assert [pf.path for pf in merged.files][-1] == str(f)
    assert not bundled.has("anthropic", "claude-foo")
    foo = merged.lookup("anthropic", "claude-foo-20990101")
    assert foo.model == "claude-foo"
    assert foo.cost(Usage(input_uncached=M, output=M), batch=True) == D("1.5")
    gpt4o = merged.lookup("openai", "gpt-4o")
    assert (gpt4o.input, gpt4o.output, gpt4o.source_url) == (D("2.00"), D("8.00"), "our negotiated contract")
    # No aliases key: the bundled aliases are kept, so the dated ids get the new price too.
    assert merged.lookup("openai", "gpt-4o-2024-11-20") == gpt4o
    assert gpt4o.variants == {}  # the override replaced the whole row, variants included
    # Everything else is untouched.
    assert merged.lookup("openai", "o3") == bundled.lookup("openai", "o3")
    assert len(merged) == len(bundled) + 1


def test_sha256_is_a_content_hash(tmp_path: Path) -> None:
    a = PriceTable.load([write(tmp_path / "a.toml", OVERRIDE)], user_default=False)
    b = PriceTable.load([write(tmp_path / "b.toml", "# same rows\n" + OVERRIDE)], user_default=False)
    assert a.sha256 == b.sha256  # same merged content from differently formatted files
    assert a.files[-1].sha256 != b.files[-1].sha256  # but the files themselves differ
    c = PriceTable.load(
        [write(tmp_path / "c.toml", OVERRIDE.replace('output = "8.00"', 'output = "8.01"'))],
        user_default=False,
    )
    assert c.sha256 != a.sha256
    assert PriceTable.load(user_default=False).sha256 == PriceTable.load(user_default=False).sha256


def test_later_files_win(tmp_path: Path) -> None:
    first = write(
        tmp_path / "1.toml", 'provider = "openai"\n[[models]]\nmodel = "gpt-4o"\ninput = "1"\noutput = "1"\n'
    )
    second = write(
        tmp_path / "2.toml", 'provider = "openai"\n[[models]]\nmodel = "gpt-4o"\ninput = "2"\noutput = "2"\n'
    )
    assert PriceTable.load([first, second], user_default=False).lookup("openai", "gpt-4o").input == 2
    assert PriceTable.load([second, first], user_default=False).lookup("openai", "gpt-4o").input == 1


def test_user_default_file_then_overrides(
    home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert user_prices_path() is None
    user = write(
        home / ".config" / "tollbench" / "prices.toml",
        'provider = "openai"\n[[models]]\nmodel = "local-llama"\ninput = "0"\noutput = "0"\n',
    )
    assert user_prices_path() == user
    assert PriceTable.load().has("openai", "local-llama")
    assert not PriceTable.load(user_default=False).has("openai", "local-llama")
    # $TOLLBENCH_PRICES replaces the default location.
    env_file = write(
        tmp_path / "env.toml",
        'provider = "openai"\n[[models]]\nmodel = "env-model"\ninput = "1"\noutput = "1"\n',
    )
    monkeypatch.setenv(ENV_VAR, str(env_file))
    table = PriceTable.load()
    assert table.has("openai", "env-model") and not table.has("openai", "local-llama")
    # --prices files come after the user file.
    cli = write(
        tmp_path / "cli.toml",
        'provider = "openai"\n[[models]]\nmodel = "env-model"\ninput = "9"\noutput = "9"\n',
    )
    assert PriceTable.load([cli]).lookup("openai", "env-model").input == 9
    monkeypatch.setenv(ENV_VAR, str(tmp_path / "missing.toml"))
    with pytest.raises(DataError, match=r"TOLLBENCH_PRICES=.*missing\.toml"):
        PriceTable.load()


def test_override_history_replaces_all_rows_of_the_model(tmp_path: Path) -> None:
    f = write(
        tmp_path / "o3.toml",
        """
provider = "openai"
[[models]]
model = "o3"
aliases = ["o3-2025-04-16", "my-o3"]
input = "1"
output = "4"
""",
    )
    table = PriceTable.load([f], user_default=False)
    assert [p.input for p in table.rows(history=True) if p.model == "o3"] == [D(1)]
    assert table.lookup("openai", "my-o3").input == 1


def test_claiming_an_alias_splits_it_off(tmp_path: Path) -> None:
    f = write(
        tmp_path / "dated.toml",
        'provider = "anthropic"\n[[models]]\nmodel = "claude-sonnet-4-5-20250929"\n'
        'input = "1"\noutput = "2"\n',
    )
    table = PriceTable.load([f], user_default=False)
    assert table.lookup("anthropic", "claude-sonnet-4-5-20250929").input == 1
    assert table.lookup("anthropic", "claude-sonnet-4-5").input == 3
    assert "claude-sonnet-4-5-20250929" not in table.lookup("anthropic", "claude-sonnet-4-5").aliases
    # Claiming another model's own id (as an alias) replaces that model.
    g = write(
        tmp_path / "takeover.toml",
        'provider = "openai"\n[[models]]\nmodel = "gpt-4o-new"\naliases = ["gpt-4o"]\n'
        'input = "1"\noutput = "2"\n',
    )
    table = PriceTable.load([g], user_default=False)
    assert table.lookup("openai", "gpt-4o").model == "gpt-4o-new"
    assert not table.has("openai", "gpt-4o-2024-11-20")


def test_bundled_off_gives_only_the_files(tmp_path: Path) -> None:
    table = PriceTable.load([write(tmp_path / "x.toml", OVERRIDE)], user_default=False, bundled=False)
    assert {p.key for p in table.rows()} == {"openai/gpt-4o", "anthropic/claude-foo"}


# ------------------------------------------------------------------------------- malformed files


def bad(tmp_path: Path, text: str) -> str:
    f = write(tmp_path / "bad-prices.toml", text)
    with pytest.raises(DataError) as info:
        PriceTable.load([f], user_default=False)
    message = str(info.value)
    assert str(f) in message, message  # always names the file
    return message


ROW = 'provider = "openai"\n[[models]]\nmodel = "m"\n'


def test_float_price_is_rejected(tmp_path: Path) -> None:
    msg = bad(tmp_path, ROW + 'input = 1.1\noutput = "1"\n')
    assert "models[0] (m)" in msg and "input = 1.1 is a TOML float" in msg and 'write input = "1.1"' in msg


def test_integer_price_is_rejected_too(tmp_path: Path) -> None:
    assert "prices must be strings" in bad(tmp_path, ROW + 'input = "1"\noutput = 2\n')


def test_invalid_toml_names_the_line(tmp_path: Path) -> None:
    msg = bad(tmp_path, ROW + 'input = "1"\noutput = \n')
    assert "invalid TOML" in msg and "line 5" in msg


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (ROW + 'input = "1"\n', "missing 'output'"),
        (ROW + 'input = "1"\noutput = "1"\ncache_read = "0.1"\n', "unknown key 'cache_read'"),
        (ROW + 'input = "abc"\noutput = "1"\n', "not a decimal number"),
        (ROW + 'input = "-1"\noutput = "1"\n', "must be a finite number >= 0"),
        (ROW + 'input = "NaN"\noutput = "1"\n', "finite"),
        (ROW + 'input = "1"\noutput = "1"\neffective_from = "June"\n', "not a date"),
        (
            ROW + 'input = "1"\noutput = "1"\neffective_from = 2025-06-10\neffective_to = 2025-06-10\n',
            "after",
        ),
        (ROW + 'input = "1"\noutput = "1"\naliases = "m2"\n', "aliases must be an array"),
        ('[[models]]\nmodel = "m"\ninput = "1"\noutput = "1"\n', "no provider"),
        ("format = 2\n" + ROW + 'input = "1"\noutput = "1"\n', "format = 2 is not supported"),
        ("prices = []\n", "unknown key 'prices'"),
        (
            ROW + 'input = "1"\noutput = "1"\n[[models.tiers]]\nthreshold = 1.5\ninput = "1"\noutput = "1"\n',
            "threshold",
        ),
        (
            ROW + 'input = "1"\noutput = "1"\n[[models.tiers]]\nthreshold = 10\ninput = "1"\n',
            "missing 'output'",
        ),
        (ROW + 'input = "1"\noutput = "1"\n[models.variants.batch]\n', "empty variant"),
        (ROW + 'input = "1"\noutput = "1"\n[models.variants.batch]\nmultiplier = "0"\n', "> 0"),
        (ROW + 'input = "1"\noutput = "1"\n[models.variants.Batch]\nmultiplier = "0.5"\n', "lower-case"),
        (
            ROW + 'input = "1"\noutput = "1"\n[[models]]\nmodel = "m"\ninput = "2"\noutput = "2"\n',
            "overlapping rows",
        ),
        (
            ROW + 'aliases = ["x"]\ninput = "1"\noutput = "1"\n[[models]]\nmodel = "n"\naliases = ["x"]\n'
            'input = "2"\noutput = "2"\n',
            "openai/x is claimed by both m and n",
        ),
    ],
)
def test_malformed_files(tmp_path: Path, text: str, expected: str) -> None:
    assert expected in bad(tmp_path, text)


def test_missing_and_binary_files(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"nope\.toml: cannot read price file"):
        PriceTable.load([tmp_path / "nope.toml"], user_default=False)
    binary = tmp_path / "bin.toml"
    binary.write_bytes(b"\xff\xfe\x00")
    with pytest.raises(DataError, match=r"bin\.toml: not UTF-8"):
        PriceTable.load([binary], user_default=False)


def test_dated_rows_without_overlap_are_fine() -> None:
    rows = parse_prices(
        ROW + 'effective_to = 2025-06-10\ninput = "10"\noutput = "40"\n'
        '[[models]]\nmodel = "m"\neffective_from = "2025-06-10"\ninput = "2"\noutput = "8"\n',
        "inline",
    )
    assert [(r.effective_from, r.input) for r in rows] == [(None, D(10)), (rows[1].effective_from, D(2))]
    assert str(rows[1].effective_from) == "2025-06-10"
