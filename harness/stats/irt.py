"""Item difficulty from history: a Rasch (one-parameter logistic) fit of earlier models' per-item scores.

``P(model m answers item i) = sigmoid(theta_m - b_i)``. :func:`rasch_fit` finds abilities ``theta``
and difficulties ``b`` by joint maximum a posteriori Newton steps with a ``Normal(0, prior_sd^2)``
prior on both (which keeps items every model got right, or wrong, at a finite difficulty). Pure
Python; items with the same answers from the same models share one difficulty, so the cost per
iteration grows with the number of distinct answer patterns, not of items.

:func:`predicted_scores` turns the fit into a score per item for a model not in the history (at the
historical models' mean ability): a fixed covariate, known before the new model is sampled, which
:class:`harness.stats.betting.ControlVariateCS` can use like a cheap model's answers (``--control
history``). It never makes the interval invalid, only narrower when it predicts the new model well.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

__all__ = ["history_correlation", "predicted_scores", "rasch_fit"]


def _sigmoid(x: float) -> float:
    if x >= 0:
        return 1.0 / (1.0 + math.exp(-x))
    e = math.exp(x)
    return e / (1.0 + e)


def rasch_fit(
    responses: Mapping[str, Mapping[str, float]], *, iterations: int = 40, prior_sd: float = 2.0
) -> tuple[dict[str, float], dict[str, float]]:
    """Fit abilities and difficulties.

    Args:
        responses: ``responses[model][item]`` = the model's score on the item in [0, 1] (a mean over
            repeats is fine); items a model did not answer are simply absent.
        iterations: Newton sweeps (alternating abilities and difficulties).
        prior_sd: standard deviation of the normal prior on every parameter.

    Returns:
        ``(ability by model, difficulty by item)``.

    Raises:
        ValueError: a score is outside [0, 1].
    """
    by_item: dict[str, list[tuple[str, float]]] = {}
    for model, scores in responses.items():
        for item, x in scores.items():
            if not 0.0 <= x <= 1.0:
                raise ValueError(f"score {x} of {model} on {item} is outside [0, 1]")
            by_item.setdefault(item, []).append((model, x))
    # Items answered alike by the same models have the same difficulty: fit one per answer pattern
    # (with a few models, a suite of thousands of items has only dozens of patterns).
    pattern_of: dict[str, tuple[tuple[str, float], ...]] = {}
    count: dict[tuple[tuple[str, float], ...], int] = {}
    for item, answers in by_item.items():
        key = tuple(sorted(answers))
        pattern_of[item] = key
        count[key] = count.get(key, 0) + 1
    theta = dict.fromkeys(responses, 0.0)
    bp = dict.fromkeys(count, 0.0)
    precision = 1.0 / (prior_sd * prior_sd)
    for _ in range(iterations):
        g_m = {m: -theta[m] * precision for m in theta}
        h_m = dict.fromkeys(theta, precision)
        for key, k in count.items():
            for model, x in key:
                p = _sigmoid(theta[model] - bp[key])
                g_m[model] += k * (x - p)
                h_m[model] += k * p * (1.0 - p)
        for model in theta:
            theta[model] += g_m[model] / h_m[model]
        for key in count:
            g, h = -bp[key] * precision, precision
            for model, x in key:
                p = _sigmoid(theta[model] - bp[key])
                g += p - x
                h += p * (1.0 - p)
            bp[key] += g / h
    b = {item: bp[key] for item, key in pattern_of.items()}
    return theta, b


def predicted_scores(responses: Mapping[str, Mapping[str, float]], items: list[str]) -> dict[str, float]:
    """Each item's predicted score for a new model of the historical models' mean ability.

    Items without history get the mean of the others' predictions (0.5 with no history at all).
    """
    theta, b = rasch_fit(responses)
    ability = math.fsum(theta.values()) / len(theta) if theta else 0.0
    known = {i: _sigmoid(ability - b[i]) for i in items if i in b}
    fill = math.fsum(known.values()) / len(known) if known else 0.5
    return {i: known.get(i, fill) for i in items}


def history_correlation(responses: Mapping[str, Mapping[str, float]], *, min_items: int = 20) -> float | None:
    """How well the history predicts a model it has not seen: each model's scores against the
    prediction from the *other* models' fit (leave one model out), the median correlation.

    What ``estimate --target-ci --control history`` assumes for the new model before buying anything.
    None with fewer than two models, or when no held-out model has ``min_items`` items with spread.
    """
    rhos: list[float] = []
    if len(responses) < 2:
        return None
    for model, scores in responses.items():
        if len(scores) < min_items:
            continue
        others = {m: s for m, s in responses.items() if m != model}
        items = list(scores)
        pred = predicted_scores(others, items)
        rho = _correlation([scores[i] for i in items], [pred[i] for i in items])
        if rho is not None:
            rhos.append(rho)
    if not rhos:
        return None
    rhos.sort()
    mid = len(rhos) // 2
    return rhos[mid] if len(rhos) % 2 else (rhos[mid - 1] + rhos[mid]) / 2.0


def _correlation(xs: list[float], ys: list[float]) -> float | None:
    n = len(xs)
    mx, my = math.fsum(xs) / n, math.fsum(ys) / n
    sxy = math.fsum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True))
    sxx = math.fsum((x - mx) ** 2 for x in xs)
    syy = math.fsum((y - my) ** 2 for y in ys)
    if sxx <= 1e-12 or syy <= 1e-12:
        return None
    return max(-1.0, min(1.0, sxy / math.sqrt(sxx * syy)))
