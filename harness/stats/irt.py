"""Item difficulty from history: a Rasch (one-parameter logistic) fit of earlier models' per-item scores.

``P(model m answers item i) = sigmoid(theta_m - b_i)``. :func:`rasch_fit` finds abilities ``theta``
and difficulties ``b`` by joint maximum a posteriori Newton steps with a ``Normal(0, prior_sd^2)``
prior on both (which keeps items every model got right, or wrong, at a finite difficulty). Pure
Python; a few hundred thousand responses take well under a second per iteration.

:func:`predicted_scores` turns the fit into a score per item for a model not in the history (at the
historical models' mean ability): a fixed covariate, known before the new model is sampled, which
:class:`harness.stats.betting.ControlVariateCS` can use like a cheap model's answers (``--control
history``). It never makes the interval invalid, only narrower when it predicts the new model well.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

__all__ = ["predicted_scores", "rasch_fit"]


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
    theta = dict.fromkeys(responses, 0.0)
    b = dict.fromkeys(by_item, 0.0)
    precision = 1.0 / (prior_sd * prior_sd)
    for _ in range(iterations):
        for model, scores in responses.items():
            g, h = -theta[model] * precision, precision
            for item, x in scores.items():
                p = _sigmoid(theta[model] - b[item])
                g += x - p
                h += p * (1.0 - p)
            theta[model] += g / h
        for item, answers in by_item.items():
            g, h = -b[item] * precision, precision
            for model, x in answers:
                p = _sigmoid(theta[model] - b[item])
                g += p - x
                h += p * (1.0 - p)
            b[item] += g / h
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
