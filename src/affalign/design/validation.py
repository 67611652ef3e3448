"""Do the design job's predictions hold? Seeded simulated studies with a known truth.

Used by ``tests/design/test_design.py`` and ``benchmarks/bench_design.py``, never by a study's own
results. One "lab" observes human posts of two groups (``affalign.align.simulation``: the
liberals drawn from ``GROUP_RATES``, the conservatives at a stated true baseline) and runs
:func:`~affalign.design.predict_design` on them; then many studies are simulated from the
true populations and scored end to end by the align stage's ``bootstrap_comparisons``:

* half-widths: a model that writes like the liberals (true alignment 1), its realized mean
  95 % half-width per cell and of the model-level mean, against the predicted ones;
* power: a model whose true tendency (or steerability towards the liberals) equals the
  predicted minimum detectable effect, the share of studies whose sign-flip test rejects at
  ``alpha`` (the prediction says 80 %).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl

from affalign.align import (
    GROUP_RATES,
    BootstrapSettings,
    Populations,
    alignment,
    bootstrap_comparisons,
    rates_at,
    simulated_studies,
)
from affalign.align import SIMULATED_LABELS as LABELS
from affalign.design.stage import DesignSettings, predict_design

GROUPS = ("liberal", "conservative")


@dataclass(frozen=True)
class Lab:
    """What the simulated lab observes and configures."""

    topics: int = 10
    group_posts: int = 300
    baseline: float = 0.8  # true alignment of the two groups
    n_per_shard: int = 25
    replicates: int = 200
    alpha: float = 0.05
    seed: int = 11

    def conservative_rates(self) -> np.ndarray:
        return rates_at(self.baseline)

    def predicted(self, draws: int = 60) -> pl.DataFrame:
        """The design job's summary from one observed sample of human posts."""
        rng = np.random.default_rng(self.seed)
        _, human = simulated_studies(
            rng, 1, self.topics, 1, self.group_posts, 1.0,
            populations=Populations(conservative_rates=self.conservative_rates()),
        )  # fmt: skip
        settings = DesignSettings(
            self.n_per_shard, GROUPS, 0.95, self.alpha, self.replicates, draws, self.seed
        )
        return predict_design(human, LABELS, settings)["summary"].filter(pl.col("configured_topics"))

    def studies(self, studies: int, n_model: int, seed: int, model_rates=None, prompt_types=("default",)):
        rng = np.random.default_rng(seed)
        model, human = simulated_studies(
            rng, studies, self.topics, n_model, self.group_posts, 1.0, prompt_types,
            Populations(model_rates=model_rates, conservative_rates=self.conservative_rates()),
        )  # fmt: skip
        settings = BootstrapSettings(self.replicates, 0.95, seed, 0)
        return bootstrap_comparisons(model, human, list(LABELS), list(GROUPS), settings)


def realized_halfwidths(lab: Lab, n_model: int, studies: int, seed: int) -> tuple[float, float]:
    """Mean cell and model-level half-widths against the liberals of a model that writes like
    them, over ``studies`` simulated studies."""
    results = lab.studies(studies, n_model, seed, model_rates=GROUP_RATES)
    half = (pl.col("corrected_high") - pl.col("corrected_low")) / 2
    liberal = pl.col("group") == "liberal"
    cell = results["alignment"].filter(liberal).select(half.mean()).item()
    level = results["model_summary"].filter(liberal).select(half.mean()).item()
    return float(cell), float(level)


def _mixture_at(effect, target: float) -> np.ndarray:
    """Label rates between the two groups' whose ``effect(rates)`` is ``target`` (bisection
    on the mixing weight; ``effect`` grows with the weight)."""
    low, high = 0.0, 1.0
    for _ in range(60):
        middle = (low + high) / 2
        if effect(middle) < target:
            low = middle
        else:
            high = middle
    return high


def realized_tendency_power(
    lab: Lab, n_model: int, effect: float, studies: int, seed: int
) -> tuple[float, float]:
    """Share of studies whose tendency test rejects at ``alpha``, for a model whose true
    tendency (towards the liberals) is ``effect``; and the mean estimated tendency."""
    liberal, conservative = GROUP_RATES, lab.conservative_rates()

    def rates(weight: float) -> np.ndarray:  # weight 0: midway; 1: the liberals
        return (0.5 + weight / 2) * liberal + (0.5 - weight / 2) * conservative

    def tendency(weight: float) -> float:
        model = rates(weight)
        return float(alignment(model, liberal) - alignment(model, conservative))

    model = rates(_mixture_at(tendency, effect))
    results = lab.studies(studies, n_model, seed, model_rates=model)["tendency"]
    return float((results["p_signflip"] < lab.alpha).mean()), float(results["tendency_corrected"].mean())


def realized_steering_power(
    lab: Lab, n_model: int, effect: float, studies: int, seed: int
) -> tuple[float, float]:
    """Share of studies whose steerability test (towards the liberals) rejects at ``alpha``,
    for a model steered to write like the liberals whose default is ``effect`` less aligned
    with them (moved towards the conservatives); and the mean estimated steerability."""
    liberal, conservative = GROUP_RATES, lab.conservative_rates()

    def steerability(weight: float) -> float:
        return float(1.0 - alignment((1 - weight) * liberal + weight * conservative, liberal))

    weight = _mixture_at(steerability, effect)
    default = (1 - weight) * liberal + weight * conservative
    results = lab.studies(
        studies, n_model, seed, model_rates={"default": default, "liberal": liberal},
        prompt_types=("default", "liberal"),
    )["steerability"].filter(pl.col("group") == "liberal")  # fmt: skip
    return float((results["p_signflip"] < lab.alpha).mean()), float(results["steerability_corrected"].mean())
