"""The align stage's job on a model without usable posts: named in a warning with its
counts, missing values written one way (empty cells) in every CSV, topics without a score
not counted."""

from pathlib import Path

import numpy as np
import polars as pl
import pytest

from affalign.align.comparisons import BootstrapSettings
from affalign.align.stage import AlignSettings, run_align_stage
from affalign.io import write_table

LABELS = ["anger", "fear", "joy"]
TOPICS = ["t0", "t1", "t2"]
PROMPT_TYPES = ["default", "liberal", "conservative"]
POSTS_PER_CELL = 20
# good: labelled posts everywhere; blank: every post kept but without a label; gappy: no
# label in topic t1 only; silent: every text empty (left out by the drop policy).
MODELS = ["good", "blank", "gappy", "silent"]
CSVS = ["alignment", "baseline", "tendency", "steerability", "model_summary"]
OTHER_CSVS = ["below_baseline", "sensitivity", "matrix", "dropped"]


def affect(post_id: str, flags) -> dict:
    return {
        "post_id": post_id,
        **{f"y_{label}": bool(flag) for label, flag in zip(LABELS, flags, strict=True)},
    }


@pytest.fixture(scope="module")
def stage(tmp_path_factory) -> tuple[Path, dict[str, str], str]:
    folder = tmp_path_factory.mktemp("align")
    rng = np.random.default_rng(5)
    generated, generated_affect, human, human_affect = [], [], [], []
    for topic in TOPICS:
        for model in MODELS:
            for prompt_type in PROMPT_TYPES:
                for i in range(POSTS_PER_CELL):
                    post_id = f"{model}-{prompt_type}-{topic}-{i}"
                    generated.append(
                        {"post_id": post_id, "model": model, "prompt_type": prompt_type, "issue": "covid",
                         "topic": topic, "is_empty": model == "silent", "is_refusal": False,
                         "is_degenerate": False}
                    )  # fmt: skip
                    flags = rng.random(len(LABELS)) < 0.5
                    flags[0] |= not flags.any()
                    if model == "blank" or (model == "gappy" and topic == "t1"):
                        flags[:] = False
                    generated_affect.append(affect(post_id, flags))
        for group in ("liberal", "conservative"):
            for i in range(30):
                post_id = f"{group}-{topic}-{i}"
                human.append({"post_id": post_id, "issue": "covid", "topic": topic, "group": group})
                human_affect.append(affect(post_id, rng.random(len(LABELS)) < 0.5))
    provenance = {"labels": LABELS}
    for name, rows in (
        ("generated", generated),
        ("generated_affect", generated_affect),
        ("human", human),
        ("human_affect", human_affect),
    ):
        write_table(pl.DataFrame(rows), folder / f"{name}.parquet", provenance)
    outputs = {name: str(folder / f"{name}.parquet") for name in [*CSVS, "distributions"]}
    outputs |= {f"{name}_csv": str(folder / f"{name}.csv") for name in CSVS}
    outputs |= {name: str(folder / f"{name}.csv") for name in OTHER_CSVS}
    settings = AlignSettings(bootstrap=BootstrapSettings(replicates=50, seed=3, permutations=19))
    return folder, outputs, settings


def test_models_and_cells_without_a_usable_post_are_warned_with_their_counts(stage, capfd):
    folder, outputs, settings = stage
    run_align_stage(
        generated=[folder / "generated.parquet"],
        generated_affect=[folder / "generated_affect.parquet"],
        human=[folder / "human.parquet"],
        human_affect=[folder / "human_affect.parquet"],
        settings=settings,
        outputs=outputs,
        classifier="lexicon",
    )
    captured = capfd.readouterr()
    warnings = [line for line in captured.err.splitlines() if line.startswith("affalign: WARNING: lexicon:")]
    assert warnings == [
        "affalign: WARNING: lexicon: model 'blank' has no usable post, so no score: of its 180 posts, 180 "
        "kept without a label (align.none_bin); its scores are empty cells in the align tables",
        "affalign: WARNING: lexicon: model 'gappy': 3 of 9 cells (prompt type/issue/topic) have no usable "
        "post, so no score: conservative/covid/t1 (20 posts: 20 kept without a label (align.none_bin)), "
        "default/covid/t1 (20 posts: 20 kept without a label (align.none_bin)), liberal/covid/t1 (20 "
        "posts: 20 kept without a label (align.none_bin))",
        "affalign: WARNING: lexicon: model 'silent' has no usable post, so no score: of its 180 posts, 180 "
        "left out as empty text (dropped.csv); it is absent from the align tables",
    ]
    # The same lines in the job's log (stdout, which run_logged sends there).
    assert all(line.removeprefix("affalign: ") in captured.out.splitlines() for line in warnings)

    # Missing values are empty cells in every CSV, never the text NaN.
    for path in folder.glob("*.csv"):
        assert "NaN" not in path.read_text(), path.name
    tendency = pl.read_csv(outputs["tendency_csv"])
    assert tendency.filter(pl.col("model") == "blank")["tendency"].null_count() == 3

    # n_topics counts the topics with a score.
    summary = pl.read_csv(outputs["model_summary_csv"])
    topics = dict(summary.group_by("model").agg(pl.col("n_topics").unique()).iter_rows())
    assert topics == {"good": [3], "gappy": [2], "blank": [0]}
    steerability = pl.read_csv(outputs["steerability_csv"])
    assert set(steerability.filter(pl.col("model") == "blank")["n_topics"]) == {0}
    # Every row of the summary has its row below the baseline, a model without a score too.
    below = pl.read_csv(outputs["below_baseline"])
    assert below.height == summary.height
    blank = below.filter(pl.col("model") == "blank")
    assert set(blank["n_topics"]) == {0} and blank["share_below_baseline"].null_count() == blank.height
