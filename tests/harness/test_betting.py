"""The horizon-tuned betting sequence and the control-variate sequence (harness.stats.betting).

The math against exact values (hypergeometric tails, the fixed-size sample size, the ticket being a
martingale of mean 1), the intervals' nesting and monotonicity, and coverage under adversarial
stopping on a small case (no HTTP, seeded).
"""

from __future__ import annotations

import math
import random
from math import comb

import pytest

from harness.stats.betting import ControlVariateCS, HorizonBettingCS, _Ticket, horizon, hypergeom_sf
from harness.stats.sampling import seeded_order
from harness.stats.sequential import ConfidenceSequence, TargetCI
from harness.suite import Item


def _sf_exact(k: int, big_n: int, succ: int, draws: int) -> float:
    top = sum(comb(succ, y) * comb(big_n - succ, draws - y) for y in range(max(k, 0), min(draws, succ) + 1))
    return top / comb(big_n, draws)


@pytest.mark.parametrize(
    ("k", "big_n", "succ", "draws"),
    [
        (3, 20, 7, 10),
        (0, 20, 7, 10),
        (8, 20, 7, 10),
        (5, 50, 25, 10),
        (12, 100, 30, 40),
        (2, 100, 30, 40),
        (31, 200, 100, 50),
        (1, 5, 5, 5),
        (6, 5, 5, 5),
        (150, 1000, 600, 200),
    ],
)
def test_hypergeometric_tail_is_exact(k: int, big_n: int, succ: int, draws: int) -> None:
    assert hypergeom_sf(k, big_n, succ, draws) == pytest.approx(_sf_exact(k, big_n, succ, draws), abs=1e-12)


def test_a_known_hypergeometric_value() -> None:
    # 5 cards from 52, at least 2 aces: 1 - P(0) - P(1) = 0.0416844...
    assert hypergeom_sf(2, 52, 4, 5) == pytest.approx(0.04168436, abs=1e-8)


def test_horizon_is_the_fixed_size_sample_size() -> None:
    # the Wald/Wilson size z^2 p (1 - p) / h^2 for an infinite population
    n0 = horizon(0.48, 0.52, 0.02, 1.959964, None)
    spread = 2 * math.sqrt(0.48 * 0.52)
    assert n0 == math.ceil((1.959964 * spread / 0.04) ** 2)
    assert abs(n0 - 2401) <= 5  # z^2 * 0.25 / 0.02^2
    # without replacement from N: n = N / (1 + (N - 1) / n0)
    assert horizon(0.48, 0.52, 0.02, 1.959964, 12000) == pytest.approx(12000 / (1 + 11999 / n0), abs=1)
    # a narrower target or a higher z needs more; never more than the population
    assert horizon(0.48, 0.52, 0.01, 1.96, 12000) > horizon(0.48, 0.52, 0.02, 1.96, 12000)
    assert horizon(0.48, 0.52, 0.02, 2.5, 12000) > horizon(0.48, 0.52, 0.02, 1.96, 12000)
    assert horizon(0.48, 0.52, 0.0001, 1.96, 300) == 300


@pytest.mark.parametrize(("k", "upper"), [(60, True), (60, False), (150, True), (185, False), (3, True)])
def test_ticket_price_is_the_largest_at_most_its_level(k: int, upper: bool) -> None:
    big_n, t, level = 200, 80, 0.02
    ticket = _Ticket(k, big_n, t, upper, level)
    assert 0.0 <= ticket.price <= level
    assert ticket.price == pytest.approx(
        _sf_exact(ticket.bound, big_n, k, t) if upper else 1 - _sf_exact(ticket.bound + 1, big_n, k, t),
        abs=1e-12,
    )
    # one step towards the mean costs more than the level
    nxt = ticket.bound - 1 if upper else ticket.bound + 1
    dearer = _sf_exact(nxt, big_n, k, t) if upper else 1 - _sf_exact(nxt + 1, big_n, k, t)
    assert dearer > level


@pytest.mark.parametrize(
    ("k", "upper", "t"), [(60, True, 30), (60, False, 50), (120, True, 1), (120, False, 79)]
)
def test_the_ticket_is_a_martingale_of_mean_one(k: int, upper: bool, t: int) -> None:
    """E[P(A | S_t)] = P(A): the ticket's value averaged over the exact law of S_t is its price."""
    big_n, horizon_t = 200, 80
    ticket = _Ticket(k, big_n, horizon_t, upper, 0.02)
    mean = 0.0
    for s in range(t + 1):
        p_s = _sf_exact(s, big_n, k, t) - _sf_exact(s + 1, big_n, k, t)
        if p_s > 0:
            mean += p_s * ticket.value(s, t, k, big_n)
    assert mean == pytest.approx(ticket.price, rel=1e-9, abs=1e-15)


def _betting(big_n: int, h: float, confidence: float = 0.95) -> HorizonBettingCS:
    return HorizonBettingCS(confidence, big_n, h)


def test_betting_intervals_are_nested_and_collapse_to_the_truth() -> None:
    """Each interval lies inside the one before (while the truth is inside: after a miss, which has
    probability <= alpha, the certain range [S_t, S_t + N - t] wins), and the last is the exact mean."""
    rng = random.Random(4)
    xs = [1.0 if rng.random() < 0.7 else 0.0 for _ in range(400)]
    cs = _betting(len(xs), 0.05)
    prev = (0.0, 1.0)
    for x in xs:
        cs.update(x)
        cs.refresh()
        assert prev[0] <= cs.low <= cs.high <= prev[1]
        prev = (cs.low, cs.high)
    assert cs.low == cs.high == pytest.approx(sum(xs) / len(xs))
    # a miss: the running intersection is replaced by the certain range, exact once all are seen
    missed = _betting(4, 0.1)
    missed.k_low = missed.k_high = 4  # as if every hypothesis but "all four right" had been rejected
    for x in (0.0, 1.0, 1.0, 1.0):
        missed.update(x)
    missed.refresh()
    assert missed.low == missed.high == 0.75
    with pytest.raises(ValueError, match="already observed"):
        cs.update(1.0)
    with pytest.raises(ValueError, match="0/1"):
        _betting(10, 0.1).update(0.5)


def test_higher_confidence_gives_a_wider_interval() -> None:
    rng = random.Random(8)
    xs = [1.0 if rng.random() < 0.6 else 0.0 for _ in range(300)]
    wide, narrow = _betting(2000, 0.05, 0.99), _betting(2000, 0.05, 0.95)
    for x in xs:
        wide.update(x)
        narrow.update(x)
    wide.refresh()
    narrow.refresh()
    assert wide.low <= narrow.low <= narrow.high <= wide.high
    assert wide.high - wide.low > narrow.high - narrow.low


def test_betting_is_about_as_narrow_as_a_fixed_size_sample_at_the_target() -> None:
    """+-0.02 on 12,000 items at 0.8: within 10% of the Wilson size 1,537 (empirical Bernstein: ~2,000+)."""
    rng = random.Random(12)
    scores = [rng.random() < 0.8 for _ in range(12000)]
    stops = {}
    for method in ("betting", "eb"):
        t = TargetCI(0.02, population=12000, method=method)
        for i, s in enumerate(scores):
            t.add(str(i), s)
            if t.done:
                break
        assert t.method == method and t.interval().half_width <= 0.02
        stops[method] = t.n
    wilson = 1.959964**2 * 0.8 * 0.2 / 0.02**2
    assert stops["betting"] < 1.1 * wilson < stops["eb"]


def test_control_variate_regression_estimate_and_interval() -> None:
    rng = random.Random(2)
    big_n = 3000
    y = [1.0 if rng.random() < 0.7 else 0.0 for _ in range(big_n)]
    c = [yi if rng.random() < 0.8 else (1.0 if rng.random() < 0.7 else 0.0) for yi in y]
    cv = ControlVariateCS(0.95, c, target_half_width=0.03)
    plain = ConfidenceSequence(0.95, big_n, target_half_width=0.03)
    prev = (0.0, 1.0)
    for yi, ci in zip(y[:800], c[:800], strict=True):
        cv.update(yi, ci)
        plain.update(yi)
        assert prev[0] <= cv.low <= cv.high <= prev[1]
        prev = (cv.low, cv.high)
    assert cv.correlation == pytest.approx(0.8, abs=0.06)
    assert 0.6 < cv.beta < 1.0
    # Var(y - beta c) = Var(y)(1 - rho^2): a much narrower interval than without the control
    assert (cv.high - cv.low) < 0.75 * (plain.high - plain.low)
    truth = sum(y) / big_n
    assert cv.low <= truth <= cv.high and abs(cv.mean - truth) < 0.02
    # a useless control (constant) still gives a valid interval, as wide as without one
    flat = ControlVariateCS(0.95, [1.0] * big_n, target_half_width=0.03)
    for yi in y[:800]:
        flat.update(yi, 1.0)
    assert flat.beta == 0.0 and flat.low <= truth <= flat.high
    with pytest.raises(ValueError, match="in \\[0, 1\\]"):
        ControlVariateCS(0.95, [2.0])


@pytest.mark.parametrize("dist", [(0.4, 0.4, 0.1, 0.1), (0.7, 0.05, 0.2, 0.05), (0.1, 0.1, 0.4, 0.4)])
@pytest.mark.parametrize("lam", [0.05, 0.3, 0.9])
def test_the_control_variate_penalty_keeps_a_supermartingale(dist: tuple[float, ...], lam: float) -> None:
    """One factor of the control variate's capital: exp(lam (u - mu) - (lam d - log(1 + lam d))) with
    d = u - m (m the predictable centre) has expectation <= 1 under any law of u of mean mu, whatever
    m: the per-observation penalty is exact, so no bound is lost to the range of u."""
    beta, r = 0.8, 0.45
    values = [1 - beta * (1 - r), beta * r, 1 + beta * r, -beta * (1 - r)]  # (y, c) = 11, 00, 10, 01
    mu = sum(p * u for p, u in zip(dist, values, strict=True))
    for m in (0.2, mu, 0.7):
        lo_dev = m + beta * (1 - r)
        bet = min(lam, 0.99 / lo_dev)  # 1 + bet d > 0 for every possible u
        factor = [math.exp(bet * (u - mu) - (bet * (u - m) - math.log1p(bet * (u - m)))) for u in values]
        assert sum(p * f for p, f in zip(dist, factor, strict=True)) <= 1.0 + 1e-12
    # the penalty is never negative and is the quadratic one for small deviations
    assert all(lam * d - math.log1p(lam * d) >= 0 for d in (-0.9, -0.1, 0.0, 0.3, 1.2))


def test_control_variate_needs_about_one_minus_rho_squared_of_the_items() -> None:
    """rho 0.8: the residual's variance is 0.36 of the score's; the stop needs well under half the
    items of the same (empirical-Bernstein-type) sequence without the control (measured ~0.42)."""
    rng = random.Random(21)
    big_n = 6000
    y = [rng.random() < 0.5 for _ in range(big_n)]
    c = {str(i): float(yi) if rng.random() < 0.8 else float(rng.random() < 0.5) for i, yi in enumerate(y)}
    order = [str(i) for i in range(big_n)]
    stops = {}
    for name, control in (("eb", None), ("control", c)):
        t = TargetCI(0.03, population=big_n, order=order, method="eb", control=control)
        for i in order:
            t.add(i, y[int(i)])
            if t.done:
                break
        assert t.method == name and t.interval().half_width <= 0.03
        stops[name] = t.n
    assert stops["control"] < 0.5 * stops["eb"], stops


def _fixture(
    seed: int, big_n: int, acc: float, rho: float
) -> tuple[list[Item], dict[str, bool], dict[str, float]]:
    rng = random.Random(seed)
    items = [Item(f"s{i % 4}-{i}", "q", "a", stratum=f"s{i % 4}") for i in range(big_n)]
    strata_acc = [acc - 0.1, acc - 0.03, acc + 0.03, acc + 0.1]
    y = {it.id: rng.random() < strata_acc[int(it.stratum[1])] for it in items}
    c = {
        it.id: float(y[it.id]) if rng.random() < rho else float(rng.random() < strata_acc[int(it.stratum[1])])
        for it in items
    }
    return items, y, c


def _history_fixture(
    seed: int, big_n: int, acc: float
) -> tuple[list[Item], dict[str, bool], dict[str, float]]:
    """Items of their own difficulty; the control is a noisy prediction of each item's P(right) in (0, 1)
    (what a Rasch fit of earlier models gives)."""
    rng = random.Random(seed)
    items = [Item(f"s{i % 4}-{i}", "q", "a", stratum=f"s{i % 4}") for i in range(big_n)]
    logit = math.log(acc / (1 - acc))
    p = {
        it.id: 1 / (1 + math.exp(-(logit + 0.3 * (int(it.stratum[1]) - 1.5) + rng.gauss(0, 1.2))))
        for it in items
    }
    y = {i: rng.random() < pi for i, pi in p.items()}
    c = {i: 1 / (1 + math.exp(-(math.log(pi / (1 - pi)) * 0.7 + rng.gauss(0, 0.6)))) for i, pi in p.items()}
    return items, y, c


@pytest.mark.parametrize("acc", [0.5, 0.8])
@pytest.mark.parametrize("method", ["betting", "eb", "control", "history"])
def test_coverage_under_adversarial_stopping(acc: float, method: str) -> None:
    """The adversary stops at the first time the interval misses the truth (before the target stops the
    run, or at any later time up to the whole population): the truth is inside at that time in >= 93%
    of the runs, for every method (the sequences hold at every time at once)."""
    runs, big_n, h = 200, 300, 0.08
    missed = 0
    for seed in range(runs):
        items, y, c = (
            _history_fixture(seed, big_n, acc) if method == "history" else _fixture(seed, big_n, acc, 0.6)
        )
        truth = sum(y.values()) / big_n
        order = [it.id for it in seeded_order(items, seed)] if seed % 2 else [it.id for it in items]
        if not seed % 2:
            random.Random(seed).shuffle(order)
        target = TargetCI(
            h,
            population=big_n,
            order=order,
            method="eb" if method == "eb" else "betting",
            control=c if method in ("control", "history") else None,
        )
        assert target.method == ("control" if method == "history" else method)
        for iid in order:
            target.add(iid, y[iid])
            iv = target.interval()
            if not iv.low <= truth <= iv.high:
                missed += 1
                break
    assert 1 - missed / runs >= 0.93, missed


def test_rasch_fit_recovers_item_order_and_keeps_perfect_items_finite() -> None:
    from harness.stats.irt import predicted_scores, rasch_fit

    rng = random.Random(1)
    items = [f"i{k}" for k in range(200)]
    true_b = {i: rng.gauss(0.0, 1.5) for i in items}
    abilities = {"weak": -1.0, "mid": 0.0, "strong": 1.0, "best": 2.0, "top": 2.5}
    responses = {
        m: {i: float(rng.random() < 1 / (1 + math.exp(-(t - true_b[i])))) for i in items}
        for m, t in abilities.items()
    }
    responses["weak"]["easy"] = responses["mid"]["easy"] = 1.0  # answered right by everyone who saw it
    theta, b = rasch_fit(responses)
    assert theta["weak"] < theta["mid"] < theta["strong"] < theta["top"]
    # difficulties follow the truth (rank correlation over the common items)
    ranked = sorted(items, key=lambda i: b[i])
    truth_rank = {i: r for r, i in enumerate(sorted(items, key=lambda i: true_b[i]))}
    n = len(items)
    d2 = sum((r - truth_rank[i]) ** 2 for r, i in enumerate(ranked))
    assert 1 - 6 * d2 / (n * (n * n - 1)) > 0.7
    assert math.isfinite(b["easy"]) and b["easy"] < 0
    pred = predicted_scores(responses, [*items, "never-seen"])
    assert all(0.0 < v < 1.0 for v in pred.values())
    assert pred["never-seen"] == pytest.approx(sum(pred[i] for i in items) / n)
    with pytest.raises(ValueError, match="outside"):
        rasch_fit({"m": {"i": 2.0}})
    # items the same models answered alike share one difficulty (one fit per answer pattern)
    same = [i for i in items if all(responses[m][i] == responses[m][items[0]] for m in abilities)]
    assert len({b[i] for i in same}) == 1


def test_history_forecasts_its_own_correlation_leaving_one_model_out() -> None:
    from harness.stats.irt import history_correlation

    rng = random.Random(3)
    items = [f"i{k}" for k in range(400)]
    spread = {i: rng.gauss(0.0, 2.0) for i in items}
    flat = dict.fromkeys(items, 0.0)

    def responses(b: dict[str, float]) -> dict[str, dict[str, float]]:
        return {
            m: {i: float(rng.random() < 1 / (1 + math.exp(-(t - b[i])))) for i in items}
            for m, t in {"a": -0.5, "b": 0.0, "c": 0.5, "d": 1.0}.items()
        }

    # items that differ in difficulty are predicted from the other models; items that do not, are not
    rho = history_correlation(responses(spread))
    assert rho is not None and rho > 0.4
    flat_rho = history_correlation(responses(flat))
    assert flat_rho is not None and abs(flat_rho) < 0.15
    assert history_correlation({"a": dict.fromkeys(items, 1.0)}) is None


def test_runs_stored_before_ci_method_resume_on_the_sequence_they_used() -> None:
    from decimal import Decimal

    from harness.run.plan import RunOptions, options_from_config, options_to_config

    opts = RunOptions(suites=["demo"], models=["openai/o4-mini"], budget_usd=Decimal(1), target_ci=0.05)
    stored = options_to_config(opts)
    assert stored["ci_method"] == "betting" and options_from_config(stored).ci_method == "betting"
    del stored["ci_method"]  # as written before #17
    assert options_from_config(stored).ci_method == "eb"
    plain = options_to_config(RunOptions(suites=["demo"], models=["openai/o4-mini"], budget_usd=Decimal(1)))
    assert plain["ci_method"] is None and options_from_config(plain).ci_method == "betting"
