"""Predicted precision of a study from its human posts alone, before any model runs.

Pure functions (pattern counts in, numbers out; seeded generators). Every prediction runs the
align stage's own estimators on simulated cells:

* A *cell option* is a model cell of ``n`` posts. Its corrected alignment with a group, and
  that score's interval (centred bootstrap replicates, ``align.bootstrap_replicates`` of
  them), are simulated ``draws`` times: the model cell is drawn from a *source population*,
  the group cell is a new sample of the group's size from the group's own posts.
* Scenarios: ``identity`` — the model writes like the group (source: the group's posts);
  ``other group`` — the model writes like the other group (source: the other group's posts),
  i.e. it sits at the partisan baseline's distance from the group.
* Model-level half-width: the stage's two-stage (topics, then posts) interval of the mean over
  the configured topics, one simulated study per draw.
* Minimum detectable effects (MDE) of the tests over topics (tendency, steerability,
  differential steerability): the smallest true mean difference that the stage's sign-flip
  test at ``alpha``, on the stage's corrected scores of simulated studies, rejects with 80 %
  power. The simulated model moves along the line between the two groups' observed
  populations (a model that writes a share of its posts like the other group): for tendency
  from midway between the groups towards one; for steerability from the group's own posts
  (steered) against a default cell moved towards the other group. Differential steerability
  (steered towards the group − steered towards the other, against the group's cell) has the
  same two-model-cells-against-one-group-cell structure, hence the same MDE. With ``T``
  topics no sign-flip test can reach ``p < 2 / 2**T``; where that is above ``alpha`` the MDE
  is undefined (NaN), as it is where even the other group's own distance is detected with
  less than 80 % power.

Assumptions, and how they fail: model posts are as variable as the group's own (a model that
writes more uniformly than people gives narrower intervals than predicted, one that mixes
registers wider); topics are exchangeable and the model's true alignment is the same on every
topic (real between-topic differences widen the model-level interval and raise the MDEs); a
real model's shift need not lie on the line between the groups;
the classifier labels model text as it labels human text.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from affalign.align import (
    alignment,
    centred_replicates,
    corrected_alignment,
    hierarchical_means,
    label_sums,
    resample_pattern_counts,
)
from affalign.stats import percentile_interval, sign_flip_p_values

POWER = 0.8
HIERARCHICAL_DRAWS = 2000
BISECTION_STEPS = 12
# Random sign vectors per power simulation row beyond exact enumeration.
POWER_SIGN_VECTORS = 1999


@dataclass(frozen=True)
class CellDraws:
    """Simulated studies of one topic × group × model size × scenario: the corrected scores
    (draws,) and their centred bootstrap replicates (draws × replicates)."""

    estimates: np.ndarray
    replicates: np.ndarray

    def sd(self) -> float:
        return float(np.nanstd(self.estimates, ddof=1))

    def halfwidth(self, confidence: float) -> float:
        low, high = percentile_interval(self.replicates, confidence)
        return float(np.nanmean((high - low) / 2.0))


def simulate_cells(
    source: np.ndarray,
    group: np.ndarray,
    features: np.ndarray,
    n_model: int,
    draws: int,
    replicates: int,
    rng: np.random.Generator,
) -> CellDraws:
    """``draws`` simulated comparisons of a model cell of ``n_model`` posts drawn from
    ``source`` with a new sample of the group (as many posts as ``group`` holds).

    ``source`` and ``group`` are post counts over one list of label patterns, ``features``
    the moment rows of those patterns (``affalign.align.pattern_moments``)."""
    source = np.asarray(source, dtype=np.int64)
    group = np.asarray(group, dtype=np.int64)
    n_group = int(group.sum())
    model_cells = resample_pattern_counts(source, n_model, draws, rng).astype(np.int64)
    group_cells = resample_pattern_counts(group, n_group, draws, rng).astype(np.int64)
    estimates = np.empty(draws)
    reps = np.empty((draws, replicates))
    for d in range(draws):
        model_reps = resample_pattern_counts(model_cells[d], n_model, replicates, rng) @ features
        group_reps = resample_pattern_counts(group_cells[d], n_group, replicates, rng) @ features
        model_point, group_point = model_cells[d] @ features, group_cells[d] @ features
        reps[d] = centred_replicates(model_point, group_point, model_reps, group_reps)
        estimates[d] = float(corrected_alignment(model_point, group_point))
    return CellDraws(estimates, reps)


def model_level_halfwidth(topics: Sequence[CellDraws], confidence: float, rng: np.random.Generator) -> float:
    """Mean half-width of the two-stage interval of the mean over these topics, one simulated
    study per draw (draw ``s`` of every topic)."""
    draws = min(len(t.estimates) for t in topics)
    widths = []
    for study in range(draws):
        means = hierarchical_means(np.vstack([t.replicates[study] for t in topics]), HIERARCHICAL_DRAWS, rng)
        low, high = percentile_interval(means, confidence)
        widths.append((high - low) / 2.0)
    return float(np.nanmean(widths))


@dataclass(frozen=True)
class Shift:
    """A family of model populations indexed by ``u`` in [0, 1], the true effect of each, and
    simulated per-topic differences of corrected scores of studies at ``u``.

    ``topics`` holds per topic ``(start, end, features)``: pattern probabilities the model
    moves between (``u = 0`` at ``start``, ``u = 1`` at ``end``, mixed linearly) and the
    moment rows of the patterns. ``difference(model_cells, features, t)`` turns model cells
    (draws × patterns) of topic ``t`` into that topic's differences; ``effect(model, t)`` is
    the true difference of a model population."""

    topics: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray]]
    n_model: int
    difference: object
    effect: object

    def population(self, t: int, u: float) -> np.ndarray:
        start, end, _ = self.topics[t]
        return (1.0 - u) * start + u * end

    def true_effect(self, u: float) -> float:
        return float(np.mean([self.effect(self.population(t, u), t) for t in range(len(self.topics))]))

    def differences(self, u: float, draws: int, rng: np.random.Generator) -> np.ndarray:
        columns = []
        for t, (_, _, features) in enumerate(self.topics):
            cells = rng.multinomial(self.n_model, self.population(t, u), size=draws).astype(float)
            columns.append(self.difference(cells, features, t))
        return np.column_stack(columns)


def probabilities(counts: np.ndarray) -> np.ndarray:
    counts = np.asarray(counts, dtype=float)
    return counts / counts.sum()


def population_alignment(p: np.ndarray, q: np.ndarray, features: np.ndarray) -> float:
    """True alignment of two populations given as pattern probabilities (their expected label
    counts per post, normalised, as a cell's counts estimate them)."""
    return float(alignment(label_sums(p @ features), label_sums(q @ features)))


def tendency_shift(topics: Sequence[dict], groups: tuple[str, str], n_model: int, draws: int,
                   rng: np.random.Generator) -> Shift:  # fmt: skip
    """A model cell scored against both groups: from midway between them (``u = 0``) to the
    first group's own posts (``u = 1``); difference ``score(model, first) − score(model,
    second)`` with group cells resampled at their sizes (drawn once, reused at every ``u``)."""
    first, second = groups
    cells = [
        {
            g: resample_pattern_counts(t["counts"][g], int(t["counts"][g].sum()), draws, rng) @ t["features"]
            for g in groups
        }
        for t in topics
    ]
    spans = []
    for t in topics:
        p, q = probabilities(t["counts"][first]), probabilities(t["counts"][second])
        spans.append((0.5 * (p + q), p, t["features"]))

    def difference(model: np.ndarray, features: np.ndarray, t: int) -> np.ndarray:
        moments = model @ features
        return corrected_alignment(moments, cells[t][first]) - corrected_alignment(moments, cells[t][second])

    def effect(model: np.ndarray, t: int) -> float:
        features, counts = topics[t]["features"], topics[t]["counts"]
        return population_alignment(model, probabilities(counts[first]), features) - population_alignment(
            model, probabilities(counts[second]), features
        )

    return Shift(spans, n_model, difference, effect)


def steering_shift(topics: Sequence[dict], group: str, other: str, n_model: int, draws: int,
                   rng: np.random.Generator) -> Shift:  # fmt: skip
    """Two model cells against one group cell: the steered cell writes like the group, the
    default (or steered-away) cell moves from the group (``u = 0``) to the other group
    (``u = 1``); difference ``score(steered, group) − score(default, group)``."""
    steered, groups = [], []
    spans = []
    for t in topics:
        own, features = t["counts"][group], t["features"]
        steered.append(rng.multinomial(n_model, probabilities(own), size=draws).astype(float) @ features)
        groups.append(resample_pattern_counts(own, int(own.sum()), draws, rng) @ features)
        spans.append((probabilities(own), probabilities(t["counts"][other]), features))

    def difference(model: np.ndarray, features: np.ndarray, t: int) -> np.ndarray:
        return corrected_alignment(steered[t], groups[t]) - corrected_alignment(model @ features, groups[t])

    def effect(model: np.ndarray, t: int) -> float:
        own = probabilities(topics[t]["counts"][group])
        return 1.0 - population_alignment(model, own, topics[t]["features"])

    return Shift(spans, n_model, difference, effect)


def minimum_detectable_effect(shift: Shift, alpha: float, draws: int, seed: int) -> float:
    """The smallest true effect along ``shift`` that the stage's two-sided sign-flip test over
    its topics rejects at ``alpha`` in :data:`POWER` of ``draws`` simulated studies (the
    scores are the stage's corrected ones, so their bias near identity is in the power).
    NaN where no sign-flip test over so few topics can reach ``alpha``, or where even the
    far end of the shift is detected less often."""
    topics = len(shift.topics)
    if topics == 0 or 2.0 ** (1 - topics) >= alpha:
        return float("nan")

    def power(u: float) -> float:
        # The same random numbers at every u keep the power curve (nearly) monotone.
        differences = shift.differences(u, draws, np.random.default_rng(seed))
        p_values = sign_flip_p_values(differences, POWER_SIGN_VECTORS, np.random.default_rng(seed + 1))
        return float(np.mean(p_values < alpha))

    if power(1.0) < POWER:
        return float("nan")
    low, high = 0.0, 1.0
    if power(low) >= POWER:
        return shift.true_effect(low)
    for _ in range(BISECTION_STEPS):
        middle = (low + high) / 2.0
        if power(middle) >= POWER:
            high = middle
        else:
            low = middle
    return shift.true_effect(high)
