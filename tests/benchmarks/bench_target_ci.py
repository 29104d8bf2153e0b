"""Benchmark: ``--target-ci 0.02`` on a generated MMLU-Pro-sized suite (12,000 items, 14 strata).

Run it directly (it is not part of the test suite)::

    python tests/benchmarks/bench_target_ci.py [--items 12000] [--half-width 0.02] [--seeds 20]
                                               [--accuracy 0.5 0.7 0.8 0.85] [--concurrency 16]

No HTTP: outcomes and costs are simulated, the statistics are the real ones.

- 14 strata of unequal size (like MMLU-Pro's subjects), each with its own difficulty; an item is
  answered correctly with probability ``accuracy_of_stratum`` (the strata's accuracies spread +-0.15
  around the target accuracy, the overall accuracy is then computed exactly from the drawn outcomes).
- Each item's cost is what o4-mini would cost on it, drawn from the simulator's o4-mini profile
  (reasoning tokens grow with the stratum's difficulty) and priced with tollbench's price table.
- Items are drawn in the run's random stratified order (:func:`harness.stats.sampling.seeded_order`) and fed
  to :class:`harness.stats.sequential.TargetCI`; the run stops when the 95% confidence sequence is no wider
  than +-half-width. The items still in flight when it stops (``--concurrency - 1``) are paid too.

Printed per accuracy: the median and maximum items at the stop, the fraction of the full run's cost
spent (median, max), the median interval half-width, and how often the interval covered the truth.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from harness.pricing.money import usd_to_nano
from harness.pricing.table import PriceTable
from harness.sim.profiles import load_profiles
from harness.stats.sampling import seeded_order
from harness.stats.sequential import TargetCI
from harness.suite import Item
from harness.types import Usage

STRATA = 14


def _fixture(seed: int, n_items: int, accuracy: float) -> tuple[list[Item], dict[str, bool], dict[str, int]]:
    rng = random.Random(seed)
    weights = [rng.uniform(0.5, 1.5) for _ in range(STRATA)]
    sizes = [int(n_items * w / sum(weights)) for w in weights]
    sizes[-1] += n_items - sum(sizes)
    profile = load_profiles()["o4-mini"]
    assert profile.reasoning_tokens is not None
    price = PriceTable.load(user_default=False).lookup("openai", "o4-mini")
    items: list[Item] = []
    correct: dict[str, bool] = {}
    cost: dict[str, int] = {}
    for s, size in enumerate(sizes):
        acc = min(0.99, max(0.01, accuracy + 0.15 * (2 * s / (STRATA - 1) - 1)))
        difficulty = 1.0 - s / (STRATA - 1)  # the low-accuracy strata are the hard ones
        for i in range(size):
            iid = f"s{s:02d}-{i}"
            items.append(Item(iid, "q", "a", stratum=f"subject{s:02d}"))
            correct[iid] = rng.random() < acc
            reasoning = profile.reasoning_tokens.draw(rng, difficulty)
            visible = profile.output_tokens.draw(rng)
            usage = Usage(
                input_uncached=rng.randint(150, 900), output=reasoning + visible, reasoning=reasoning
            )
            cost[iid] = usd_to_nano(price.cost(usage))
    return items, correct, cost


def _one(seed: int, n_items: int, accuracy: float, half_width: float, concurrency: int) -> dict[str, float]:
    items, correct, cost = _fixture(seed, n_items, accuracy)
    truth = sum(correct.values()) / n_items
    order = [it.id for it in seeded_order(items, seed)]
    target = TargetCI(half_width, population=n_items, order=order)
    stop = n_items
    for n, iid in enumerate(order, 1):
        target.add(iid, correct[iid])
        if target.done:
            stop = n
            break
    paid = order[: min(n_items, stop + concurrency - 1)]
    iv = target.interval()
    return {
        "n": stop,
        "cost_fraction": sum(cost[i] for i in paid) / sum(cost.values()),
        "half_width": iv.half_width,
        "covered": float(iv.low <= truth <= iv.high),
        "truth": truth,
        "full_usd": sum(cost.values()) / 1e9,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--items", type=int, default=12000)
    ap.add_argument("--half-width", type=float, default=0.02)
    ap.add_argument("--seeds", type=int, default=20)
    ap.add_argument("--accuracy", type=float, nargs="+", default=[0.5, 0.7, 0.8, 0.85])
    ap.add_argument("--concurrency", type=int, default=16)
    args = ap.parse_args()
    print(
        f"{args.items:,} items, {STRATA} strata, target +-{args.half_width}, 95% confidence sequence, "
        f"{args.seeds} seeds, {args.concurrency - 1} in-flight items paid after the stop"
    )
    print(
        f"{'accuracy':>8} {'n stop (median, max)':>22} {'items %':>8} {'cost % (median, max)':>22} "
        f"{'half-width':>10} {'coverage':>9} {'full run $':>10} {'s/run':>6}"
    )
    for acc in args.accuracy:
        t0 = time.perf_counter()
        runs = [_one(seed, args.items, acc, args.half_width, args.concurrency) for seed in range(args.seeds)]
        per = (time.perf_counter() - t0) / len(runs)
        ns = [r["n"] for r in runs]
        fr = [r["cost_fraction"] for r in runs]
        print(
            f"{acc:>8.2f} {statistics.median(ns):>14,.0f}, {max(ns):>6,.0f} "
            f"{100 * statistics.median(ns) / args.items:>7.1f}% "
            f"{100 * statistics.median(fr):>13.1f}%, {100 * max(fr):>5.1f}% "
            f"{statistics.median(r['half_width'] for r in runs):>10.4f} "
            f"{statistics.mean(r['covered'] for r in runs):>9.2f} "
            f"{statistics.mean(r['full_usd'] for r in runs):>10.2f} {per:>6.2f}"
        )


if __name__ == "__main__":
    main()
