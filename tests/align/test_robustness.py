"""results/align/robustness.csv: rank correlation of model-level corrected alignment and sign
agreement of significant findings, for every pair of classifiers."""

from __future__ import annotations

import polars as pl
import pytest
from scipy.stats import spearmanr

from affalign.align.robustness import ROBUSTNESS_COLUMNS, robustness_table

MODELS = ["m1", "m2", "m3", "m4", "m5"]


def summary(values, gaps=None):
    gaps = gaps or [(-0.1, -0.2, -0.05)] * len(values)  # gap, low, high: below the baseline
    return pl.DataFrame(
        {
            "model": MODELS[: len(values)],
            "prompt_type": "default",
            "issue": "covid-19",
            "group": "liberal",
            "alignment_corrected": values,
            "baseline_gap": [g[0] for g in gaps],
            "gap_low": [g[1] for g in gaps],
            "gap_high": [g[2] for g in gaps],
        }
    )


def tendency(values, p_holm):
    return pl.DataFrame(
        {
            "model": MODELS[: len(values)],
            "issue": "covid-19",
            "prompt_type": "default",
            "tendency_corrected": values,
            "p_holm": p_holm,
        }
    )


def steerability(values, p_holm):
    return pl.DataFrame(
        {
            "model": MODELS[: len(values)],
            "issue": "covid-19",
            "group": "liberal",
            "steerability_corrected": values,
            "p_holm": p_holm,
        }
    )


def test_rank_correlation_matches_scipy_and_signs_are_counted_by_hand():
    a_align, b_align = [0.61, 0.72, 0.55, 0.80, 0.67], [0.50, 0.79, 0.52, 0.70, 0.71]
    tables = {
        "lexicon": {
            "model_summary": summary(a_align),
            # significant: m1 (+), m2 (-); m3 significant under neither
            "tendency": tendency([0.1, -0.2, 0.05, 0.3, -0.1], [0.01, 0.02, 0.5, 0.9, None]),
            "steerability": steerability([0.1, 0.2], [0.5, 0.5]),
        },
        "judge": {
            "model_summary": summary(
                b_align,
                [
                    (-0.1, -0.2, -0.05),
                    (0.1, 0.05, 0.2),
                    (0.1, -0.1, 0.2),
                    (0.0, -0.1, 0.1),
                    (-0.2, -0.3, 0.1),
                ],
            ),
            # m1 agrees (+/+), m2 disagrees (-/+), m4 significant only here and agrees (+/+)
            "tendency": tendency([0.2, 0.1, -0.05, 0.1, 0.2], [0.3, 0.6, 0.7, 0.001, 0.9]),
            "steerability": steerability([0.1, -0.2], [0.5, 0.5]),
        },
    }
    table = robustness_table(tables, alpha=0.05)
    assert table.columns == ROBUSTNESS_COLUMNS
    rows = {row["measure"]: row for row in table.iter_rows(named=True)}
    assert {(r["classifier_a"], r["classifier_b"]) for r in rows.values()} == {("judge", "lexicon")}
    # classifier_a is "judge" (sorted): the correlation is symmetric anyway.
    expected = spearmanr(a_align, b_align)
    assert rows["alignment_corrected"]["spearman"] == pytest.approx(expected.statistic)
    assert rows["alignment_corrected"]["spearman_p"] == pytest.approx(expected.pvalue)
    assert rows["alignment_corrected"]["n"] == 5
    assert (rows["tendency"]["n_significant"], rows["tendency"]["n_sign_agrees"]) == (3, 2)
    assert rows["tendency"]["share_sign_agrees"] == pytest.approx(2 / 3)
    # Nothing significant: nothing to agree on.
    assert rows["steerability"]["n_significant"] == 0 and rows["steerability"]["share_sign_agrees"] is None
    # Lexicon: every gap below (significant); judge: m1 below (agrees), m2 above (disagrees),
    # m3, m4, m5 intervals cover 0 but lexicon's are significant: signs +, 0, - vs -.
    assert rows["baseline_gap"]["n_significant"] == 5
    assert rows["baseline_gap"]["n_sign_agrees"] == 2  # m1 and m5


def test_every_pair_of_three_classifiers():
    one = {
        "model_summary": summary([0.1, 0.2, 0.3]),
        "tendency": tendency([0.1], [0.01]),
        "steerability": steerability([0.1], [0.01]),
    }
    table = robustness_table({"a": one, "b": one, "c": one}, alpha=0.05)
    assert table.height == 3 * 4
    perfect = table.filter(pl.col("measure") == "alignment_corrected")
    assert perfect["spearman"].to_list() == pytest.approx([1.0, 1.0, 1.0])
    assert (
        table.filter(pl.col("measure") != "alignment_corrected")["share_sign_agrees"].to_list() == [1.0] * 9
    )


def test_kappa_per_shared_label_worked_by_hand():
    # anger: a = 1100101011, b = 1000111011 -> observed 8/10, both mark 6/10:
    # chance = .6 * .6 + .4 * .4 = .52, kappa = (.8 - .52) / (1 - .52) = 7/12.
    a = [1, 1, 0, 0, 1, 0, 1, 0, 1, 1]
    b = [1, 0, 0, 0, 1, 1, 1, 0, 1, 1]
    ids = [f"p{i}" for i in range(10)]
    human_a = pl.DataFrame({"post_id": ids, "y_anger": [bool(v) for v in a], "y_trust": [True] * 10})
    # b lists its posts in another order and has a label a lacks (not compared).
    human_b = pl.DataFrame(
        {"post_id": ids[::-1], "y_anger": [bool(v) for v in b][::-1], "y_joy": [False] * 10}
    )
    one = {
        "model_summary": summary([0.1, 0.2, 0.3]),
        "tendency": tendency([0.1], [0.5]),
        "steerability": steerability([0.1], [0.5]),
    }
    table = robustness_table({"a": {**one, "human": human_a}, "b": {**one, "human": human_b}}, alpha=0.05)
    kappa = table.filter(pl.col("measure") == "kappa")
    assert kappa["label"].to_list() == ["anger"] and kappa["n"].to_list() == [10]
    assert kappa["kappa"][0] == pytest.approx(7 / 12)
    assert kappa["kappa_low"][0] <= 7 / 12 <= kappa["kappa_high"][0]
    # Perfect agreement is 1; one constant label on both sides has no kappa.
    same = robustness_table({"a": {**one, "human": human_a}, "c": {**one, "human": human_a}}, alpha=0.05)
    rows = {r["label"]: r["kappa"] for r in same.filter(pl.col("measure") == "kappa").iter_rows(named=True)}
    assert rows == {"anger": pytest.approx(1.0), "trust": None}


def test_a_label_map_merges_and_renames_labels_before_kappa():
    ids = [f"p{i}" for i in range(6)]
    lexicon = pl.DataFrame(
        {
            "post_id": ids,
            "y_care.virtue": [True, False, False, False, True, False],
            "y_care.vice": [False, True, False, False, False, False],
        }
    )
    judge = pl.DataFrame({"post_id": ids, "y_care": [True, True, False, False, True, False]})
    one = {
        "model_summary": summary([0.1, 0.2, 0.3]),
        "tendency": tendency([0.1], [0.5]),
        "steerability": steerability([0.1], [0.5]),
    }
    tables = {"mfd2": {**one, "human": lexicon}, "judge": {**one, "human": judge}}
    unmapped = robustness_table(tables, alpha=0.05)
    assert unmapped.filter(pl.col("measure") == "kappa").height == 0  # no name in common
    mapped = robustness_table(
        tables, alpha=0.05, label_map={"mfd2": {"care.virtue": "care", "care.vice": "care"}}
    ).filter(pl.col("measure") == "kappa")
    assert mapped["label"].to_list() == ["care"] and mapped["kappa"][0] == pytest.approx(1.0)


def test_a_label_map_names_classifiers_of_the_config(study):
    from conftest import validated_config

    from affalign.config import ConfigError, check_config

    workdir, config = study
    config["robustness"] = {"label_map": {"mfd2": {"care.virtue": "care"}}}
    check_config(validated_config(config), "study.yaml", workdir)
    config["robustness"] = {"label_map": {"nope": {"care.virtue": "care"}}}
    with pytest.raises(ConfigError, match=r"robustness.label_map.nope is not a classifier"):
        check_config(validated_config(config), "study.yaml", workdir)


def test_label_samples_put_every_classifiers_labels_side_by_side(tmp_path):
    from affalign.align.samples import write_label_samples

    human = tmp_path / "results/human/covid-19/posts.parquet"
    human.parent.mkdir(parents=True)
    ids = [f"h{i}" for i in range(10)]
    pl.DataFrame(
        {"post_id": ids, "issue": "covid-19", "topic": "masks", "group": ["liberal", "conservative"] * 5,
         "text": ids}
    ).write_parquet(human)  # fmt: skip
    shard = tmp_path / "results/generated/m1/covid-19/masks/default.parquet"
    shard.parent.mkdir(parents=True)
    gen_ids = [f"g{i}" for i in range(5)]
    pl.DataFrame(
        {"post_id": gen_ids, "model": "m1", "issue": "covid-19", "topic": "masks", "prompt_type": "default",
         "text": gen_ids}
    ).write_parquet(shard)  # fmt: skip
    affect = []
    for name, rows in {"lex": ids + gen_ids, "judge": ids[:-2] + gen_ids}.items():  # judge: 2 unparsed
        path = tmp_path / f"results/classify/{name}/all.parquet"
        path.parent.mkdir(parents=True)
        pl.DataFrame(
            {
                "post_id": rows,
                "y_anger": [i % 2 == 0 for i in range(len(rows))],
                "y_joy": [i % 3 == 0 for i in range(len(rows))],
            }
        ).write_parquet(path)
        affect.append(str(path))
    output = tmp_path / "samples.csv"
    table = write_label_samples([str(human)], [str(shard)], affect, ["lex", "judge"], output, 3, 11)
    assert table.group_by("source", "group").len().sort("source", "group").rows() == [
        ("human", "conservative", 3), ("human", "liberal", 3), ("m1", None, 3),
    ]  # fmt: skip

    def given_by_lex(i: int) -> str:
        labels = [name for name, on in (("anger", i % 2 == 0), ("joy", i % 3 == 0)) if on]
        return ";".join(labels) or "none"

    lex = {post: given_by_lex(i) for i, post in enumerate(ids + gen_ids)}
    for post, given in table.select("post_id", "lex").iter_rows():
        assert given == lex[post]
    assert set(table.filter(pl.col("post_id").is_in(ids[-2:]))["judge"]) <= {"(unparsed)"}
    assert pl.read_csv(output).height == table.height
    again = write_label_samples(
        [str(human)], [str(shard)], affect, ["lex", "judge"], tmp_path / "b.csv", 3, 11
    )
    assert again.equals(table)
