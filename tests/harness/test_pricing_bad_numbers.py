"""Bad numbers in a price file or a models file (issue 10, item 13).

A price of ``"1e300"`` or ``"1E+999999"``, a negative or NaN price, a NaN/inf temperature or
``extra_body`` number: one line naming the file, the field and the fix, exit 2, nothing recorded, no
traceback.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.cli.main import main
from harness.errors import DataError
from harness.models import load_aliases
from harness.pricing.table import parse_prices

BAD_PRICES = ["1e300", "1E+999999", "-1", "NaN", "Infinity", "-0.5", "100001"]


def _price_file(tmp_path: Path, field: str, value: str) -> Path:
    path = tmp_path / "prices.toml"
    prices = {"input": "0.15", "output": "0.60"}
    prices[field] = value
    body = "\n".join(f'{k} = "{v}"' for k, v in prices.items())
    path.write_text(f'provider = "openai"\n[[models]]\nmodel = "gpt-4o-mini"\n{body}\n', encoding="utf-8")
    return path


def _one_line_error(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    return lines[0]


@pytest.mark.parametrize("value", BAD_PRICES)
@pytest.mark.parametrize("field", ["input", "output"])
def test_prices_command_refuses_bad_price(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], field: str, value: str
) -> None:
    path = _price_file(tmp_path, field, value)
    code = main(["prices", "gpt-4o-mini", "--prices", str(path)])
    _, err = capsys.readouterr()
    line = _one_line_error(err)
    assert code == 2
    assert str(path) in line and field in line and value in line


@pytest.mark.parametrize("value", ["1e300", "1E+999999", "NaN", "-1"])
def test_run_with_a_bad_price_file_exits_2_and_records_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], value: str
) -> None:
    path = _price_file(tmp_path, "input", value)
    db = tmp_path / "runs.db"
    code = main(["run", "demo", "-m", "openai/gpt-4o-mini", "--sim", "--prices", str(path), "--db", str(db)])
    _, err = capsys.readouterr()
    line = _one_line_error(err)
    assert code == 2
    assert str(path) in line and "input" in line
    assert not db.exists()


def test_bad_variant_multiplier_and_tier_prices(tmp_path: Path) -> None:
    for extra in (
        '[models.variants.priority]\nmultiplier = "1e300"\n',
        '[[models.tiers]]\nthreshold = 200000\ninput = "1E+999999"\noutput = "1"\n',
    ):
        text = 'provider = "openai"\n[[models]]\nmodel = "m"\ninput = "1"\noutput = "2"\n' + extra
        with pytest.raises(DataError) as info:
            parse_prices(text, "f.toml")
        assert "\n" not in str(info.value) and "f.toml" in str(info.value)


def test_sane_prices_still_load() -> None:
    rows = parse_prices('provider = "x"\n[[models]]\nmodel = "m"\ninput = "600"\noutput = "0.000001"\n', "f")
    assert rows[0].input == 600


MODEL_FILES = [
    ("temperature = nan", "temperature"),
    ("temperature = inf", "temperature"),
    ("temperature = -inf", "temperature"),
    ("temperature = -1.0", "temperature"),
    ("extra_body = { top_p = nan }", "top_p"),
    ("extra_body = { logit_bias = { x = inf } }", "logit_bias.x"),
]


@pytest.mark.parametrize(("line", "field"), MODEL_FILES)
def test_models_file_non_finite_numbers(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], line: str, field: str
) -> None:
    path = tmp_path / "models.toml"
    path.write_text(f'[models."openai/odd"]\nmodel = "openai/gpt-4o-mini"\n{line}\n', encoding="utf-8")
    with pytest.raises(DataError) as info:
        load_aliases(path)
    assert field in str(info.value) and str(path) in str(info.value)
    db = tmp_path / "runs.db"
    code = main(["run", "demo", "-m", "openai/odd", "--models-file", str(path), "--sim", "--db", str(db)])
    _, err = capsys.readouterr()
    out_line = _one_line_error(err)
    assert code == 2
    assert str(path) in out_line and field in out_line and "openai/odd" in out_line
    assert not db.exists()
