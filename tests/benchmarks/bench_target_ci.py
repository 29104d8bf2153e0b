"""Benchmark: ``--target-ci 0.02`` on a generated MMLU-Pro-sized suite (12,000 items, 14 strata), per method.

Run it directly (it is not part of the test suite)::

    python tests/benchmarks/bench_target_ci.py [--items 12000] [--half-width 0.02] [--seeds 200]
        [--accuracy 0.5 0.7 0.8 0.85] [--rho 0.3 0.6 0.8] [--concurrency 16] [--jobs 2]

No HTTP: outcomes and costs are simulated, the statistics are the real ones.

- 14 strata of unequal size (like MMLU-Pro's subjects), each with its own difficulty, and every item
  with its own difficulty around its stratum's (``ITEM_SD`` logits): the expensive model answers item
  ``i`` right with probability ``sigmoid(theta + logit(stratum accuracy) - b_i)`` (the strata's
  accuracies spread +-0.15 around the target, ``theta`` set so the mean is the target; the overall
  accuracy is then computed exactly from the drawn outcomes).
- Each item's cost is what o4-mini would cost on it, drawn from the simulator's o4-mini profile
  (reasoning tokens grow with the stratum's difficulty) and priced with tollbench's price table. The
  control model is gpt-4o-mini (its profile and price), which answers *every* item.
- The control's answer equals the expensive model's with probability ``rho`` and is otherwise an
  independent draw at the stratum's accuracy, so the two scores correlate with coefficient ``rho``.
- ``history``: four earlier models (abilities ``HISTORY_OFFSETS`` logits around the expensive one's)
  answered every item; their Rasch fit (:mod:`harness.stats.irt`) predicts each item's score and is the
  control (forced here; a run uses it only where its leave-one-model-out correlation says it pays).
  Nothing is bought for it.
- Items are drawn in the run's random stratified order (:func:`harness.stats.sampling.seeded_order`) and fed
  to :class:`harness.stats.sequential.TargetCI`; the run stops when the 95% interval is no wider than
  +-half-width. The items still in flight when it stops (``--concurrency - 1``) are paid too.

Methods: ``eb`` (the empirical-Bernstein sequence, the default before #17), ``betting`` (the
horizon-tuned betting sequence, the default now), ``cv rho`` (``--control``: regression estimator on the
cheap model's answers), ``history`` (``--control history``). ``fixed`` is the fixed-size Wilson sample
the same width needs at the true accuracy, ``z^2 p (1 - p) / h^2`` (valid only at a size fixed in
advance); ``forecast`` is what ``estimate --target-ci`` says before buying
(:func:`harness.stats.sequential.planned_items` at the true accuracy and, for ``cv``, the measured
correlation ``rho``; for ``history`` its leave-one-model-out correlation on the earlier models).

Printed per accuracy and method: the correlation of the control with the model's scores over all items,
items at the stop (median, max), the cost of what was bought (cheap
model's full run included) as a share of the expensive model's full run (median, max), the median
interval half-width, and how often the interval covered the truth.

``--design`` prints, instead, what *choosing* the items by the control could save at a fixed size
beyond the regression estimator every ``--control`` run already uses (seed 0, per accuracy and
control): the per-item variance of the plain mean, of the regression estimator on a uniform sample,
of a sample stratified by the control (deciles of a prediction, or its 0/1 answer) with proportional
allocation, with Neyman allocation at the strata's *true* standard deviations (an upper bound: a run
only has predictions of them), and of sampling with replacement with probability proportional to
the predicted standard deviation ``sqrt(c (1 - c))`` (mixed half and half with uniform) and the
difference estimator. Each is a share of the plain mean's variance; the ratio to the regression
estimator's is what choosing would add.
"""

from __future__ import annotations

import argparse
import functools
import math
import multiprocessing
import random
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from harness.pricing.money import usd_to_nano
from harness.pricing.table import PriceTable
from harness.sim.profiles import load_profiles
from harness.stats.irt import history_correlation, predicted_scores
from harness.stats.sampling import seeded_order
from harness.stats.sequential import TargetCI, planned_items
from harness.suite import Item
from harness.types import Usage

STRATA = 14
#: Spread (logits) of the items' own difficulty around their stratum's.
ITEM_SD = 1.2
#: The earlier models of ``history``: abilities (logits) relative to the expensive model's.
HISTORY_OFFSETS = (-1.0, -0.3, 0.4, 1.1)


def _rates(provider: str, model: str) -> tuple[int, int]:
    """Nano-dollars per million input and output tokens (the prices used have no tiers: linear)."""
    price = PriceTable.load(user_default=False).lookup(provider, model)
    assert not price.tiers
    per_in = usd_to_nano(price.cost(Usage(input_uncached=1_000_000)))
    per_out = usd_to_nano(price.cost(Usage(output=1_000_000)))
    return per_in, per_out


@functools.lru_cache(maxsize=4)
def _costs(seed: int, n_items: int) -> tuple[list[Item], dict[str, float], dict[str, float], list[float]]:
    """Items, the expensive and the cheap model's cost per item, and each stratum's difficulty."""
    rng = random.Random(seed)
    weights = [rng.uniform(0.5, 1.5) for _ in range(STRATA)]
    sizes = [int(n_items * w / sum(weights)) for w in weights]
    sizes[-1] += n_items - sum(sizes)
    profiles = load_profiles()
    big, small = profiles["o4-mini"], profiles["gpt-4o-mini"]
    assert big.reasoning_tokens is not None
    big_in, big_out = _rates("openai", "o4-mini")
    small_in, small_out = _rates("openai", "gpt-4o-mini")
    items: list[Item] = []
    cost: dict[str, float] = {}
    cheap: dict[str, float] = {}
    for s, size in enumerate(sizes):
        difficulty = 1.0 - s / (STRATA - 1)  # the low-accuracy strata are the hard ones
        for i in range(size):
            iid = f"s{s:02d}-{i}"
            items.append(Item(iid, "q", "a", stratum=f"subject{s:02d}"))
            prompt = rng.randint(150, 900)
            out = big.reasoning_tokens.draw(rng, difficulty) + big.output_tokens.draw(rng)
            cost[iid] = (prompt * big_in + out * big_out) / 1e6
            cheap[iid] = (prompt * small_in + small.output_tokens.draw(rng) * small_out) / 1e6
    return items, cost, cheap, [s / (STRATA - 1) for s in range(STRATA)]


def _stratum_accuracy(accuracy: float, stratum: str) -> float:
    s = int(stratum[-2:])
    return min(0.99, max(0.01, accuracy + 0.15 * (2 * s / (STRATA - 1) - 1)))


def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x)) if x >= 0 else math.exp(x) / (1.0 + math.exp(x))


def _logit(p: float) -> float:
    return math.log(p / (1.0 - p))


@functools.lru_cache(maxsize=2)
def _difficulty(seed: int, n_items: int) -> dict[str, float]:
    """Each item's own difficulty (logits), the same for every model and accuracy of a seed."""
    items = _costs(seed, n_items)[0]
    rng = random.Random(f"{seed}-difficulty")
    return {it.id: rng.gauss(0.0, ITEM_SD) for it in items}


def _item_accuracy(seed: int, n_items: int, accuracy: float, offset: float = 0.0) -> dict[str, float]:
    """P(right) per item for a model ``offset`` logits abler than one of mean accuracy ``accuracy``:
    ``sigmoid(theta + logit(stratum accuracy) - difficulty)``, ``theta`` set so the mean is ``accuracy``."""
    items = _costs(seed, n_items)[0]
    diff = _difficulty(seed, n_items)
    base = {it.id: _logit(_stratum_accuracy(accuracy, it.stratum)) - diff[it.id] for it in items}
    lo, hi = -6.0, 6.0
    for _ in range(40):
        mid = (lo + hi) / 2.0
        if sum(_sigmoid(mid + v) for v in base.values()) / n_items < accuracy:
            lo = mid
        else:
            hi = mid
    theta = (lo + hi) / 2.0 + offset
    return {i: _sigmoid(theta + v) for i, v in base.items()}


def _history_control(seed: int, n_items: int, accuracy: float) -> tuple[dict[str, float | None], float]:
    """``--control history``: a Rasch fit of earlier models' 0/1 results on every item predicts the
    expensive model's score per item (the models differ from it in ability, share the difficulties)."""
    responses: dict[str, dict[str, float]] = {}
    for k, offset in enumerate(HISTORY_OFFSETS):
        rng = random.Random(f"{seed}-{accuracy}-history-{k}")
        p = _item_accuracy(seed, n_items, accuracy, offset)
        responses[f"m{k}"] = {i: float(rng.random() < pi) for i, pi in p.items()}
    items = list(_difficulty(seed, n_items))
    return dict(predicted_scores(responses, items)), history_correlation(responses) or 0.0


def _correlation(xs: list[float], ys: list[float]) -> float:
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    sxy = math.fsum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True))
    sxx = math.fsum((x - mx) ** 2 for x in xs)
    syy = math.fsum((y - my) ** 2 for y in ys)
    return sxy / math.sqrt(sxx * syy) if sxx > 0 and syy > 0 else 0.0


def _one(
    seed: int, n_items: int, accuracy: float, half_width: float, concurrency: int, rhos: tuple[float, ...]
) -> dict[str, dict[str, float]]:
    items, cost, cheap, _ = _costs(seed, n_items)
    rng = random.Random(f"{seed}-{accuracy}")
    acc = _item_accuracy(seed, n_items, accuracy)
    correct = {it.id: rng.random() < acc[it.id] for it in items}
    truth = sum(correct.values()) / n_items
    order = [it.id for it in seeded_order(items, seed)]
    full = sum(cost.values())
    full_cheap = sum(cheap.values())
    stratum = {it.id: it.stratum for it in items}
    out: dict[str, dict[str, float]] = {}
    methods: list[tuple[str, dict[str, float | None] | None]] = [("eb", None), ("betting", None)]
    for rho in rhos:
        crng = random.Random(f"{seed}-{accuracy}-{rho}")
        control: dict[str, float | None] = {
            i: float(correct[i])
            if crng.random() < rho
            else float(crng.random() < _stratum_accuracy(accuracy, stratum[i]))
            for i in order
        }
        methods.append((f"cv {rho}", control))
    history, history_rho = _history_control(seed, n_items, accuracy)
    methods.append(("history", history))
    ys = [float(correct[i]) for i in order]
    for name, control in methods:
        method = "eb" if name == "eb" else "betting"
        target = TargetCI(half_width, population=n_items, order=order, method=method, control=control)
        stop = n_items
        for n, iid in enumerate(order, 1):
            target.add(iid, correct[iid])
            if target.done:
                stop = n
                break
        paid = order[: min(n_items, stop + concurrency - 1)]
        iv = target.interval()
        bought_cheap = full_cheap if name.startswith("cv") else 0.0  # history costs nothing new
        spent = sum(cost[i] for i in paid) + bought_cheap
        rho_all = _correlation(ys, [float(control[i] or 0.0) for i in order]) if control else 0.0
        out[name] = {
            "n": stop,
            "cost_fraction": spent / full,
            "half_width": iv.half_width,
            "covered": float(iv.low <= truth <= iv.high),
            "truth": truth,
            "rho": rho_all,
            "rho_forecast": history_rho if name == "history" else rho_all,
            "full_usd": full / 1e9,
            "cheap_usd": full_cheap / 1e9,
        }
    return out


def _variance(xs: list[float]) -> float:
    m = statistics.fmean(xs)
    return statistics.fmean([(x - m) ** 2 for x in xs])


def _design_row(y: list[float], c: list[float], binary: bool) -> tuple[float, ...]:
    """Per-item variances (shares of the plain mean's) of: the regression estimator, proportional
    stratification by the control, Neyman allocation at the true within-stratum deviations, and PPS
    with replacement on the predicted deviation with the difference estimator."""
    n = len(y)
    vy = _variance(y)
    mc, my = statistics.fmean(c), statistics.fmean(y)
    beta = math.fsum((ci - mc) * (yi - my) for ci, yi in zip(c, y, strict=True)) / math.fsum(
        (ci - mc) ** 2 for ci in c
    )
    resid = [yi - beta * ci for yi, ci in zip(y, c, strict=True)]
    v_reg = _variance(resid)
    if binary:
        strata = [[i for i in range(n) if c[i] < 0.5], [i for i in range(n) if c[i] >= 0.5]]
    else:
        ranked = sorted(range(n), key=lambda i: c[i])
        strata = [ranked[k * n // 10 : (k + 1) * n // 10] for k in range(10)]
    weights = [len(s) / n for s in strata]
    sds = [math.sqrt(_variance([y[i] for i in s])) for s in strata]
    v_prop = math.fsum(w * sd * sd for w, sd in zip(weights, sds, strict=True))
    v_neyman = math.fsum(w * sd for w, sd in zip(weights, sds, strict=True)) ** 2
    predicted = [math.sqrt(max(ci * (1.0 - ci), 1e-4)) for ci in c]
    total = math.fsum(predicted)
    pi = [0.5 / n + 0.5 * sd / total for sd in predicted]
    v_pps = (
        math.fsum(d * d / (n * n * p) for d, p in zip(resid, pi, strict=True)) - statistics.fmean(resid) ** 2
    )
    return v_reg / vy, v_prop / vy, v_neyman / vy, v_pps / vy


def design(n_items: int, accuracies: list[float], rhos: tuple[float, ...]) -> None:
    """``--design``: what choosing the items by the control could save beyond the regression estimator."""
    items = _costs(0, n_items)[0]
    ids = [it.id for it in items]
    stratum = {it.id: it.stratum for it in items}
    print(
        f"{n_items:,} items, seed 0; per-item variance as a share of the plain mean's (in brackets: of "
        "the regression estimator's, i.e. what choosing adds)"
    )
    print(
        f"{'accuracy':>8} {'control':>22} {'regression':>10} {'stratified':>16} "
        f"{'Neyman (true sd)':>16} {'PPS':>16}"
    )
    for accuracy in accuracies:
        p = _item_accuracy(0, n_items, accuracy)
        rng = random.Random(f"0-{accuracy}")
        y = [float(rng.random() < p[i]) for i in ids]
        history, _ = _history_control(0, n_items, accuracy)
        cases: list[tuple[str, list[float], bool]] = [
            ("history (Rasch fit)", [float(history[i] or 0.0) for i in ids], False),
            ("each item's P(right)", [p[i] for i in ids], False),
        ]
        for rho in rhos:
            crng = random.Random(f"0-{accuracy}-{rho}")
            cases.append(
                (
                    f"0/1 answers, rho {rho}",
                    [
                        y[k]
                        if crng.random() < rho
                        else float(crng.random() < _stratum_accuracy(accuracy, stratum[i]))
                        for k, i in enumerate(ids)
                    ],
                    True,
                )
            )
        for name, c, binary in cases:
            reg, prop, ney, pps = _design_row(y, c, binary)
            print(
                f"{accuracy:>8.2f} {name:>22} {reg:>10.3f} {prop:>7.3f} ({prop / reg:.3f}) "
                f"{ney:>7.3f} ({ney / reg:.3f}) {pps:>7.3f} ({pps / reg:.3f})",
                flush=True,
            )


def _task(args: tuple[int, int, float, float, int, tuple[float, ...]]) -> dict[str, dict[str, float]]:
    return _one(*args)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--items", type=int, default=12000)
    ap.add_argument("--half-width", type=float, default=0.02)
    ap.add_argument("--seeds", type=int, default=200)
    ap.add_argument("--accuracy", type=float, nargs="+", default=[0.5, 0.7, 0.8, 0.85])
    ap.add_argument("--rho", type=float, nargs="*", default=[0.3, 0.6, 0.8])
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--jobs", type=int, default=2, help="worker processes (default 2)")
    ap.add_argument("--design", action="store_true", help="what choosing items by the control could save")
    args = ap.parse_args()
    rhos = tuple(args.rho)
    if args.design:
        design(args.items, args.accuracy, rhos)
        return
    print(
        f"{args.items:,} items, {STRATA} strata, target +-{args.half_width}, 95% intervals, "
        f"{args.seeds} seeds, {args.concurrency - 1} in-flight items paid after the stop; "
        "cost % = bought / expensive model's full run (cv: the cheap model's full run included)"
    )
    print(
        f"{'accuracy':>8} {'method':>8} {'rho':>5} {'fixed n':>7} {'forecast':>8} "
        f"{'n stop (median, max)':>21} {'cost % (median, max)':>21} {'half-width':>10} {'coverage':>8}"
    )
    t0 = time.perf_counter()
    for accuracy in args.accuracy:
        tasks = [
            (seed, args.items, accuracy, args.half_width, args.concurrency, rhos)
            for seed in range(args.seeds)
        ]
        # seeds in order per worker, so each worker's cost cache is reused across its runs
        chunk = max(1, len(tasks) // (4 * max(1, args.jobs)))
        if args.jobs > 1:
            with multiprocessing.Pool(args.jobs) as pool:
                runs = pool.map(_task, tasks, chunksize=chunk)
        else:
            runs = [_task(t) for t in tasks]
        z2 = 1.959964**2
        for name in runs[0]:
            rs = [r[name] for r in runs]
            truth = statistics.mean(r["truth"] for r in rs)
            rho = statistics.mean(r["rho"] for r in rs)
            fixed = z2 * truth * (1 - truth) / args.half_width**2
            kind = "control" if name.startswith("cv") or name == "history" else name
            # the forecast is made before buying: history's correlation is its leave-one-model-out one
            rho_f = statistics.mean(r["rho_forecast"] for r in rs)
            forecast = planned_items(kind, truth, args.half_width, args.items, rho=rho_f) or args.items
            ns = [r["n"] for r in rs]
            fr = [r["cost_fraction"] for r in rs]
            print(
                f"{accuracy:>8.2f} {name:>8} {rho if kind == 'control' else float('nan'):>5.2f} "
                f"{fixed:>7,.0f} {forecast:>8,} "
                f"{statistics.median(ns):>13,.0f}, {max(ns):>6,.0f} "
                f"{100 * statistics.median(fr):>12.1f}%, {100 * max(fr):>5.1f}% "
                f"{statistics.median(r['half_width'] for r in rs):>10.4f} "
                f"{statistics.mean(r['covered'] for r in rs):>8.3f}",
                flush=True,
            )
    first = _costs(0, args.items)
    print(
        f"full run: o4-mini ${sum(first[1].values()) / 1e9:,.2f}, gpt-4o-mini (control) "
        f"${sum(first[2].values()) / 1e9:,.2f}; {time.perf_counter() - t0:,.0f} s"
    )


if __name__ == "__main__":
    main()
