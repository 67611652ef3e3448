"""A classifier against a gold file (classifiers.<c>.gold): per-label precision, recall and F1
worked by hand, the bootstrap interval's coverage, the gold file's checks before any job,
and results/align/<c>/gold_f1.csv from a real run of the lexicon path."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from conftest import REPO, run_snakemake, scenario_study, validated_config, write_config

from affalign.align.gold import (
    F1_REPLICATES,
    GOLD_F1_COLUMNS,
    MIN_GOLD_POSTS,
    f1_scores,
    f1_with_intervals,
    gold_f1_table,
)
from affalign.classify import classifier_labels, classifier_spec
from affalign.config import ConfigError, check_config, hub_commits

NRC = ["anger", "anticipation", "disgust", "fear", "joy", "sadness", "surprise", "trust"]
DEMO_GOLD = REPO / "resources" / "demo" / "gold" / "emotion.csv"

# --- Worked by hand ------------------------------------------------------------------------

# Six posts, four labels. Columns: a, b, c, d.
TRUTH = np.array(
    [
        [1, 1, 0, 0],
        [1, 0, 0, 1],
        [0, 1, 0, 1],
        [1, 0, 0, 0],
        [0, 0, 0, 1],
        [0, 1, 0, 0],
    ],
    dtype=bool,
)
SAID = np.array(
    [
        [1, 0, 0, 0],
        [0, 0, 0, 0],
        [1, 1, 0, 0],
        [1, 0, 0, 0],
        [0, 0, 0, 0],
        [0, 1, 0, 0],
    ],
    dtype=bool,
)
# a: TP 2 (posts 1, 4), FP 1 (post 3), FN 1 (post 2): P 2/3, R 2/3, F1 4/6.
# b: TP 2 (posts 3, 6), FP 0, FN 1 (post 1): P 1, R 2/3, F1 2·2/(2·2 + 0 + 1) = 4/5.
# c: nothing in the gold file, nothing said: P, R and F1 undefined.
# d: 3 in the gold file, never said: P undefined, R 0, F1 0.
BY_HAND = {
    "support": [3, 3, 0, 3],
    "precision": [2 / 3, 1.0, None, None],
    "recall": [2 / 3, 2 / 3, None, 0.0],
    "f1": [2 / 3, 4 / 5, None, 0.0],
}


def as_expected(values):
    return [pytest.approx(v) if v is not None else None for v in values]


def finite_or_none(values):
    return [float(v) if np.isfinite(v) else None for v in values]


def test_precision_recall_and_f1_worked_by_hand():
    scores = f1_scores(TRUTH, SAID)
    assert scores["support"].tolist() == BY_HAND["support"]
    for key in ("precision", "recall", "f1"):
        assert finite_or_none(scores[key]) == as_expected(BY_HAND[key]), key


def frames(truth, said, labels, drop=()):
    ids = [f"p{i}" for i in range(len(truth))]
    gold = pl.DataFrame({"post_id": ids, **{f"y_{label}": truth[:, i] for i, label in enumerate(labels)}})
    predicted = pl.DataFrame(
        {"post_id": ids, **{f"y_{label}": said[:, i] for i, label in enumerate(labels)}}
    ).filter(~pl.col("post_id").is_in(list(drop)))
    return gold, predicted


def test_the_table_has_a_row_per_label_and_a_macro_row_of_the_defined_labels():
    gold, predicted = frames(TRUTH, SAID, ["a", "b", "c", "d"])
    table = gold_f1_table(gold, predicted, confidence=0.95, seed=7)
    assert table.columns == GOLD_F1_COLUMNS
    assert table["label"].to_list() == ["a", "b", "c", "d", "macro"]
    assert set(table["n"]) == {6}
    rows = table.head(4)
    for key in ("precision", "recall", "f1"):
        assert rows[key].to_list() == as_expected(BY_HAND[key]), key
    macro = table.row(4, named=True)
    # Means over the labels where each is defined; support summed.
    assert macro["support"] == 9
    assert macro["precision"] == pytest.approx((2 / 3 + 1) / 2)
    assert macro["recall"] == pytest.approx((2 / 3 + 2 / 3 + 0) / 3)
    assert macro["f1"] == pytest.approx((2 / 3 + 4 / 5 + 0) / 3)
    # The undefined label has no interval; the others an interval around their F1.
    c = table.row(2, named=True)
    assert c["f1_low"] is None and c["f1_high"] is None
    for row in table.filter(pl.col("label") != "c").iter_rows(named=True):
        assert 0.0 <= row["f1_low"] <= row["f1"] <= row["f1_high"] <= 1.0, row
    # d is never said: every resample gives F1 0 (or none), so its interval is [0, 0].
    assert (table.row(3, named=True)["f1_low"], table.row(3, named=True)["f1_high"]) == (0.0, 0.0)
    # Seeded: the same seed, the same table.
    assert table.equals(gold_f1_table(gold, predicted, confidence=0.95, seed=7))


def test_posts_the_classifier_could_not_label_are_left_out_of_n():
    gold, predicted = frames(TRUTH, SAID, ["a", "b", "c", "d"], drop={"p2"})
    table = gold_f1_table(gold, predicted, confidence=0.95, seed=7)
    assert set(table["n"]) == {5}
    # Without post 2 (a: FN, d: FN), a has TP 2, FP 1, FN 0: F1 = 4/5.
    assert table.row(0, named=True)["f1"] == pytest.approx(4 / 5)
    assert table.row(3, named=True)["support"] == 2


def test_the_interval_is_the_percentile_bootstrap_over_posts():
    """Against resampling posts by index (another random stream): the same interval up to
    Monte Carlo error."""
    rng = np.random.default_rng(3)
    truth = rng.random((300, 2)) < [0.3, 0.15]
    said = np.where(truth, rng.random(truth.shape) < 0.7, rng.random(truth.shape) < 0.1)
    result = f1_with_intervals(truth, said, 0.9, np.random.default_rng(11))
    draws = np.random.default_rng(12).integers(0, 300, size=(4000, 300))
    for label in range(2):
        t, s = truth[:, label][draws], said[:, label][draws]
        tp, fp, fn = (t & s).sum(1), (~t & s).sum(1), (t & ~s).sum(1)
        low, high = np.percentile(2 * tp / (2 * tp + fp + fn), [5, 95])
        assert result["f1_low"][label] == pytest.approx(low, abs=0.02)
        assert result["f1_high"][label] == pytest.approx(high, abs=0.02)
    assert result["macro_low"] < result["macro_f1"] < result["macro_high"]


# --- Coverage: a known F1 from a large synthetic population ---------------------------------

# A label a third of the posts carry, found 70 % of the time, given to 10 % of the others:
# population F1 = 2·0.21 / (2·0.21 + 0.07 + 0.09) ≈ 0.72.
PREVALENCE, SENSITIVITY, FALSE_POSITIVE_RATE = 0.3, 0.7, 0.1


def coverage(n: int, samples: int, seed: int) -> float:
    rng = np.random.default_rng(seed)
    size = 200_000
    truth = rng.random(size) < PREVALENCE
    said = np.where(truth, rng.random(size) < SENSITIVITY, rng.random(size) < FALSE_POSITIVE_RATE)
    true_f1 = float(f1_scores(truth, said)["f1"])
    assert true_f1 == pytest.approx(0.724, abs=0.005)
    covered = 0
    for _ in range(samples):
        picked = rng.integers(0, size, n)
        result = f1_with_intervals(truth[picked], said[picked], 0.95, rng, F1_REPLICATES)
        covered += result["f1_low"][0] <= true_f1 <= result["f1_high"][0]
    return covered / samples


@pytest.mark.parametrize(
    ("n", "samples", "lowest"),
    # The smallest gold file the checks accept (about nine posts carry the label): the
    # percentile interval falls a little short of 95 %; a large file: nominal.
    [(MIN_GOLD_POSTS, 1000, 0.90), (5000, 300, 0.92)],
)
def test_intervals_cover_the_population_f1_near_nominal(n, samples, lowest):
    covered = coverage(n, samples, seed=n)
    assert lowest <= covered <= 0.985, covered


# --- The gold file: checked before any job -------------------------------------------------


def gold_file(path: Path, rows: list[list[str]], header: list[str] | None = None) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(header or ["post_id", "text", "anger", "joy"])
        writer.writerows(rows)
    return path


def posts(n: int) -> list[list[str]]:
    return [[f"g{i}", f"post number {i}", str(i % 2), str((i // 2) % 2)] for i in range(n)]


def with_gold(config: dict, gold: Path | str, classifier: str = "nrc-emotion") -> dict:
    config = dict(config, classifiers={**config["classifiers"]})
    config["classifiers"][classifier] = {**config["classifiers"][classifier], "gold": str(gold)}
    return validated_config(config)


@pytest.mark.parametrize(
    ("rows", "header", "message"),
    [
        ([], None, r"is empty"),
        (None, None, r"is empty"),
        (posts(40), ["post_id", "body", "anger", "joy"], r"has no column 'text'"),
        (posts(40), ["id", "text", "anger", "joy"], r"has no column 'post_id'"),
        (posts(40), ["post_id", "text", "anger", "outrage"], r"column 'outrage' is not a label"),
        ([[p[0], p[1]] for p in posts(40)], ["post_id", "text"], r"has no label column"),
        (
            [*posts(39), ["g40", "text", "yes", "0"]],
            None,
            r"column 'anger' row 40 is 'yes'; labels are 0 or 1",
        ),
        ([*posts(39), ["g40", "text", "", "0"]], None, r"column 'anger' row 40 is empty; labels are 0 or 1"),
        (
            [*posts(39), ["g3", "again", "1", "0"]],
            None,
            r"post id 'g3' in row 4 is not unique \(again in row 40\)",
        ),
        ([*posts(39), ["g40", "  ", "1", "0"]], None, r"column 'text' is empty in row 40"),
        (posts(MIN_GOLD_POSTS - 1), None, rf"has {MIN_GOLD_POSTS - 1} posts; .* at least {MIN_GOLD_POSTS}"),
    ],
)
def test_a_bad_gold_file_stops_the_run_naming_what_is_wrong(study, tmp_path, rows, header, message):
    workdir, config = study
    path = tmp_path / "gold.csv"
    if rows is None:
        path.write_bytes(b"")
    else:
        gold_file(path, rows, header)
    with pytest.raises(ConfigError, match=r"study.yaml: classifiers.nrc-emotion.gold: .*" + message):
        check_config(with_gold(config, path), "study.yaml", workdir)


def test_a_gold_file_that_does_not_exist_stops_the_run(study, tmp_path):
    workdir, config = study
    with pytest.raises(ConfigError, match=r"classifiers.nrc-emotion.gold '.*nope.csv' does not exist"):
        check_config(with_gold(config, tmp_path / "nope.csv"), "study.yaml", workdir)


def test_every_classifier_type_takes_a_gold_file_with_a_subset_of_its_labels(study, tmp_path):
    workdir, config = study
    subset = gold_file(tmp_path / "gold.csv", posts(MIN_GOLD_POSTS))  # anger and joy only
    check_config(with_gold(config, subset), "study.yaml", workdir)
    check_config(with_gold(config, DEMO_GOLD), "study.yaml", workdir)
    # Every type's branch of the schema has the key (each forbids keys it does not list).
    model = str(workdir / "model")
    for spec in (
        {"type": "hf", "model": model, "labels": ["anger", "joy"]},
        {"type": "hf-binary-set", "models": {"anger": model, "joy": model}},
        {
            "type": "llm",
            "model": next(iter(config["models"])),
            "labels": {"anger": "a", "joy": "j"},
            "prompt": str(REPO / "resources/classifier_prompts/labels.txt"),
        },
    ):
        typed = validated_config({**config, "classifiers": {"c": {**spec, "gold": str(subset)}}})
        assert classifier_labels(typed["classifiers"]["c"]) == ("anger", "joy")
        check_config(typed, "study.yaml", workdir)
    # The labels the gold file may have are the classifier's: mfd2 has no anger.
    with pytest.raises(ConfigError, match=r"column 'anger' is not a label of the classifier"):
        check_config(with_gold(config, subset, "mfd2"), "study.yaml", workdir)


def test_a_gold_file_does_not_change_what_the_classifiers_labels_depend_on(study, tmp_path):
    """The classify jobs' recorded spec leaves the gold file out: adding one reclassifies
    nothing but the gold posts."""
    _, config = study
    before = classifier_spec(validated_config(config), "nrc-emotion", hub_commits({}))
    after = classifier_spec(with_gold(config, DEMO_GOLD), "nrc-emotion", hub_commits({}))
    assert after == before == {"type": "lexicon", "lexicon": "nrc-emotion"}


def test_the_demo_gold_file_has_every_nrc_emotion():
    gold = pl.read_csv(DEMO_GOLD, infer_schema=False)
    assert gold.columns == ["post_id", "text", *NRC]
    assert gold.height >= MIN_GOLD_POSTS and gold["post_id"].n_unique() == gold.height
    for label in NRC:
        assert set(gold[label]) <= {"0", "1"} and (gold[label] == "1").sum() >= 5, label


# --- The workflow: the lexicon path for real -----------------------------------------------


def test_gold_f1_of_a_lexicon_equals_an_independent_computation(tmp_path):
    workdir, config = scenario_study(tmp_path, "llm-classifier")
    configfile = write_config(workdir / "study.yaml", config)
    target = "results/align/nrc-emotion/gold_f1.csv"
    result = run_snakemake(workdir, "--", target, configfile=configfile, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
    table = pl.read_csv(workdir / target)
    # Independently: the gold CSV and the lexicon's affect file of the gold posts, counted.
    gold = pl.read_csv(config["classifiers"]["nrc-emotion"]["gold"], infer_schema=False)
    said = pl.read_parquet(workdir / "results/classify/nrc-emotion/gold.parquet")
    assert sorted(said["post_id"]) == sorted(gold["post_id"])
    joined = gold.join(said, on="post_id")
    expected_f1 = []
    for label in NRC:
        truth = (joined[label] == "1").to_list()
        predicted = joined[f"y_{label}"].to_list()
        tp = sum(t and p for t, p in zip(truth, predicted, strict=True))
        fp = sum(p and not t for t, p in zip(truth, predicted, strict=True))
        fn = sum(t and not p for t, p in zip(truth, predicted, strict=True))
        row = table.filter(pl.col("label") == label).row(0, named=True)
        assert row["n"] == gold.height and row["support"] == tp + fn, label
        assert row["precision"] == (pytest.approx(tp / (tp + fp)) if tp + fp else None), label
        assert row["recall"] == pytest.approx(tp / (tp + fn)), label
        assert row["f1"] == pytest.approx(2 * tp / (2 * tp + fp + fn)), label
        assert row["f1_low"] <= row["f1"] <= row["f1_high"], label
        expected_f1.append(2 * tp / (2 * tp + fp + fn))
    macro = table.filter(pl.col("label") == "macro").row(0, named=True)
    assert macro["f1"] == pytest.approx(sum(expected_f1) / len(expected_f1))
    # The gold posts went through the classify job as human posts do (its provenance).
    from affalign.io import read_provenance

    provenance = read_provenance(workdir / "results/classify/nrc-emotion/gold.parquet")
    assert provenance["classifier"] == "nrc-emotion" and provenance["input"].endswith(
        "gold/nrc-emotion/posts.parquet"
    )
    assert "URLs and @mentions removed" in provenance["text_normalisation"]


def test_an_endpoint_judge_labels_its_gold_posts_through_the_endpoint_within_its_budget(study, tmp_path):
    from conftest import job_counts

    from affalign.config import endpoint_specs
    from affalign.config.endpoints import requests_planned

    workdir, config = study
    config["models"]["hosted"] = {
        "kind": "instruct",
        # Nothing listens there: a dry run never calls it.
        "endpoint": {
            "base_url": "http://127.0.0.1:9/v1",
            "model": "provider/judge-x",
            "request_budget": 1000,
            "max_concurrency": 2,
        },
    }
    gold = gold_file(tmp_path / "gold.csv", posts(MIN_GOLD_POSTS + 3))
    config["classifiers"] = {
        "ep-judge": {
            "type": "llm",
            "model": "hosted",
            "labels": {"anger": "the writer is angry", "joy": "the writer is happy"},
            "prompt": str(REPO / "resources/classifier_prompts/labels.txt"),
            "gold": str(gold),
        }
    }
    config = validated_config(config)
    configfile = write_config(workdir / "study.yaml", config)
    target = "results/align/ep-judge/gold_f1.csv"
    dry = run_snakemake(workdir, "--dry-run", "--", target, configfile=configfile)
    assert dry.returncode == 0, dry.stdout + dry.stderr
    counts = job_counts(dry.stdout)
    assert {rule: counts.get(rule) for rule in ("gold_posts", "classify_gold_llm_endpoint", "gold_f1")} == {
        "gold_posts": 1,
        "classify_gold_llm_endpoint": 1,
        "gold_f1": 1,
    }, dry.stdout
    assert "serve_judge" not in counts and "classify_gold" not in counts
    # The endpoint's request budget counts the gold posts (one request each, structured).
    jobs = [("classify_gold_llm_endpoint", {"classifier": "ep-judge"})]
    assert requests_planned(config, endpoint_specs(config, ["hosted"]), jobs) == {
        "hosted": MIN_GOLD_POSTS + 3
    }
