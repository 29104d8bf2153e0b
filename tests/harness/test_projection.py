"""The live projection of a run's final cost, and the partial (target-CI) summary."""

from __future__ import annotations

import random

import pytest

from harness.forecast.projection import Projection, summarize_partial
from harness.stats.sequential import TargetCI


def test_projection_converges_to_the_final_cost() -> None:
    rng = random.Random(1)
    costs = [int(rng.lognormvariate(15, 0.6)) for _ in range(400)]
    proj = Projection(len(costs))
    for i, c in enumerate(costs):
        proj.call_settled(c)
        proj.unit_done(c)
        if i == 99:
            est = proj.estimate()
            assert est.low_nano <= sum(costs) <= est.high_nano
            assert est.units_done == 100 and est.units_remaining == 300
    final = proj.estimate()
    assert final.projected_nano == final.low_nano == final.high_nano == sum(costs)


def test_projection_interval_covers_in_most_seeded_runs() -> None:
    covered = 0
    runs = 200
    for seed in range(runs):
        rng = random.Random(seed)
        costs = [int(rng.lognormvariate(14, 0.7)) for _ in range(200)]
        proj = Projection(200)
        for c in costs[:40]:
            proj.call_settled(c)
            proj.unit_done(c)
        est = proj.estimate()
        covered += est.low_nano <= sum(costs) <= est.high_nano
    assert covered / runs >= 0.90, covered


def test_prior_from_the_forecast_before_any_unit() -> None:
    proj = Projection(100, prior_mean_nano=1000, prior_sd_nano=300, worst_case_unit_nano=5000)
    est = proj.estimate()
    assert est.projected_nano == 100_000
    assert est.low_nano < 100_000 < est.high_nano <= 500_000
    assert "projected $0.0001" in est.text()


def test_worst_case_caps_the_upper_end_and_spent_the_lower() -> None:
    proj = Projection(10, worst_case_unit_nano=100)
    proj.call_settled(90)
    proj.unit_done(90)
    proj.call_settled(5)
    proj.unit_done(5)  # very uneven: a wide interval
    est = proj.estimate()
    assert est.high_nano <= 95 + 8 * 100
    assert est.low_nano >= 95


def test_failed_attempts_and_skipped_units() -> None:
    proj = Projection(10)
    proj.call_settled(50)  # a failed attempt, no unit finished yet
    proj.call_settled(100)
    proj.unit_done(150)
    proj.units_skipped(4)
    est = proj.estimate()
    assert est.spent_nano == 150 and est.units_remaining == 5
    proj.set_remaining(0)
    assert proj.estimate().projected_nano == 150
    with pytest.raises(ValueError):
        proj.call_settled(-1)
    with pytest.raises(ValueError):
        proj.units_skipped(-1)


def test_summarize_partial_reports_n_of_n_interval_spend_and_full_cost() -> None:
    rng = random.Random(4)
    n_items = 3000
    target = TargetCI(0.05, population=n_items)
    unit_costs = []
    for i in range(n_items):
        target.add(str(i), rng.random() < 0.75)
        unit_costs.append(1000 + rng.randrange(200))
        if target.done:
            break
    spent = sum(unit_costs) + 500  # a failed attempt too
    s = summarize_partial(
        model="openai/o4-mini",
        suite="mmlu-pro",
        target=target,
        unit_costs_nano=unit_costs,
        spent_nano=spent,
        full_units=n_items,
    )
    assert s.reached and s.n_items == len(unit_costs) < n_items and s.population == n_items
    assert s.interval.half_width <= 0.05
    assert s.full_run.low_nano <= 1100 * n_items <= s.full_run.high_nano
    line = s.line()
    assert f"{s.n_items:,} of 3,000 items" in line and "target reached" in line and "full run" in line
    d = s.as_dict()
    assert isinstance(d["spent_usd"], str) and d["n_items"] == s.n_items and d["reached"] is True
