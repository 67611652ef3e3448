"""Positional alignment: prompts, answer distributions from log-probabilities, metrics, tables."""

from __future__ import annotations

import math

import numpy as np
import polars as pl
import pytest
from scipy.stats import wasserstein_distance

from affalign.opinions.client import Scoring, added_token, answer_logprobs, payload
from affalign.opinions.comparisons import HUMAN_AVG, HUMAN_WORST, InferenceSettings, compare_opinions
from affalign.opinions.positional import (
    Steering,
    context_slug,
    human_question_alignment,
    opinion_alignment,
    opinion_prompt,
    option_distribution,
    parse_context_slug,
    question_alignment,
    refusal_rates,
    wasserstein_1d,
)
from affalign.opinions.survey import Question

QUESTION = Question(
    id="q1",
    text="How much of a priority should this be?",
    options=("A top priority", "Important", "Not important", "Refused"),
    ordinals=(1.0, 2.0, 3.0, None),
    refusal=(False, False, False, True),
)
STEERING = Steering(
    qa_question="In general, would you describe your political views as",
    qa_options=("Conservative", "Moderate", "Liberal", "Refused"),
    qa_answer="Liberal",
    bio="In general, I would describe my political views as liberal.",
    portray="in general, you would describe your political views as liberal",
)
BLOCK = (
    "Question: How much of a priority should this be?\n"
    "A. A top priority\nB. Important\nC. Not important\nD. Refused\nAnswer:"
)


# --- metric -----------------------------------------------------------------------------


def test_identical_distributions_align_fully():
    assert opinion_alignment([1, 2, 3, 4], [0.1, 0.2, 0.3, 0.4], [0.1, 0.2, 0.3, 0.4]) == pytest.approx(1.0)


def test_opposite_ends_do_not_align_at_all():
    assert opinion_alignment([1, 2, 3, 4], [1, 0, 0, 0], [0, 0, 0, 1]) == pytest.approx(0.0)
    assert opinion_alignment([1, 2, 4], [0, 0, 1], [1, 0, 0]) == pytest.approx(0.0)


def test_midpoint_cases_by_hand():
    # All mass on 1 vs all on 2, range 1..3: W1 = 1, normalised by 2.
    assert opinion_alignment([1, 2, 3], [1, 0, 0], [0, 1, 0]) == pytest.approx(0.5)
    # Half the mass moves from 1 to 3: W1 = 0.5 * 2 = 1, range 2.
    assert opinion_alignment([1, 2, 3], [1, 0, 0], [0.5, 0, 0.5]) == pytest.approx(0.5)
    # Uneven ordinals 1, 2, 4: moving all mass from 2 to 4 costs 2 of a range of 3.
    assert opinion_alignment([1, 2, 4], [0, 1, 0], [0, 0, 1]) == pytest.approx(1 - 2 / 3)
    # Unnormalised weights are normalised first.
    assert opinion_alignment([1, 2, 3], [2, 0, 0], [0, 5, 0]) == pytest.approx(0.5)


def test_wasserstein_matches_scipy_on_random_cases():
    rng = np.random.default_rng(7)
    for _ in range(200):
        n = int(rng.integers(2, 8))
        values = rng.permutation(rng.uniform(-3, 10, size=n))
        p, q = rng.dirichlet(np.ones(n)), rng.dirichlet(np.ones(n)) * rng.uniform(0.5, 3)
        expected = wasserstein_distance(values, values, p, q)
        assert wasserstein_1d(values, p, q) == pytest.approx(expected, abs=1e-12)
        spread = values.max() - values.min()
        assert opinion_alignment(values, p, q) == pytest.approx(1 - expected / spread, abs=1e-12)


def test_degenerate_inputs_are_rejected():
    with pytest.raises(ValueError, match="ordinal values"):
        opinion_alignment([2, 2], [1, 0], [0, 1])
    with pytest.raises(ValueError, match="positive sum"):
        wasserstein_1d([1, 2], [0, 0], [0, 1])


# --- answer distribution from log-probabilities -------------------------------------------


def test_exact_token_ids_take_the_larger_variant_and_renormalise():
    # Token ids: A = 10 (and " A" = 20), B = 11, C = 12, D (Refused) = 13.
    logprobs = {10: math.log(0.1), 20: math.log(0.3), 11: math.log(0.2), 12: math.log(0.1), 13: math.log(0.2)}
    found = option_distribution(logprobs, [[10, 20], [11], [12], [13]], QUESTION.refusal, exact=True)
    raw = np.array([0.3, 0.2, 0.1, 0.2])
    assert found.p == pytest.approx(tuple(raw / raw.sum()))
    assert found.refusal_mass == pytest.approx(0.2 / 0.8)
    assert found.p_ordinal[:3] == pytest.approx((0.5, 1 / 3, 1 / 6))
    assert math.isnan(found.p_ordinal[3])
    assert found.floored == (False,) * 4
    assert found.logprobs[0] == pytest.approx(math.log(0.3))


def test_exact_mode_refuses_a_missing_letter():
    with pytest.raises(ValueError, match=r"option\(s\) \['C'\]"):
        option_distribution(
            {10: -1.0, 11: -2.0, 13: -3.0}, [[10], [11], [12], [13]], QUESTION.refusal, exact=True
        )


def test_top_k_strings_space_variant_wins_and_missing_letters_get_the_floor():
    # " A" beats "A"; C and D are missing. p_min = 0.05 (the "A" token), remaining mass
    # 1 - (0.05 + 0.4 + 0.2 + 0.1) = 0.25, so the floor is min(0.05, 0.25 / 2) = 0.05.
    top = {"A": math.log(0.05), " A": math.log(0.4), "B": math.log(0.2), "x": math.log(0.1)}
    variants = [[letter, f" {letter}"] for letter in "ABCD"]
    found = option_distribution(top, variants, QUESTION.refusal, exact=False)
    raw = np.array([0.4, 0.2, 0.05, 0.05])
    assert found.floored == (False, False, True, True)
    assert found.p == pytest.approx(tuple(raw / raw.sum()))
    assert found.refusal_mass == pytest.approx(0.05 / 0.7)
    assert found.p_ordinal[:3] == pytest.approx(tuple(raw[:3] / raw[:3].sum()))


def test_floor_is_the_remaining_mass_when_that_is_smaller():
    # remaining = 1 - 0.95 = 0.05 over 2 missing letters = 0.025 < p_min 0.05.
    top = {"A": math.log(0.6), "B": math.log(0.3), "zz": math.log(0.05)}
    found = option_distribution(top, [["A"], ["B"], ["C"], ["D"]], QUESTION.refusal, exact=False)
    assert found.logprobs[2] == pytest.approx(math.log(0.025))
    raw = np.array([0.6, 0.3, 0.025, 0.025])
    assert found.p == pytest.approx(tuple(raw / raw.sum()))


def test_a_top_k_answer_without_any_letter_and_no_remaining_mass_gives_every_letter_the_same_share():
    # What failed a shard at random: the top-k mass rounds to 1 and no letter is among it.
    top = {"x": math.log(0.7), "y": math.log(0.3)}
    found = option_distribution(top, [["A"], ["B"], ["C"], ["D"]], QUESTION.refusal, exact=False)
    assert found.floored == (True, True, True, True)
    assert found.p == pytest.approx((0.25, 0.25, 0.25, 0.25))
    with pytest.raises(ValueError, match="no log-probability returned"):
        option_distribution(top, [["A"], ["B"], ["C"], ["D"]], QUESTION.refusal, exact=True)


@pytest.mark.parametrize("impossible", [-9999.0, -math.inf, math.nan])
def test_a_top_k_answer_with_a_token_at_probability_zero_is_refused_not_scored(impossible):
    # vLLM 0.32 answers a top-k request batched with a logprob_token_ids request with one
    # "<pad>": -9999.0 entry; scored, it would give every letter the same share.
    from affalign.opinions.positional import CorruptedTopK

    with pytest.raises(CorruptedTopK, match="pull request 51789"):
        option_distribution({"<pad>": impossible}, [["A"], ["B"]], (False, False), exact=False)
    with pytest.raises(CorruptedTopK):
        option_distribution({"A": -0.1, "x": impossible}, [["A"], ["B"]], (False, False), exact=False)
    # Exact answers are for the letters only and are scored as they are.
    exact = option_distribution({"A": -0.1, "B": -9999.0}, [["A"], ["B"]], (False, False), exact=True)
    assert exact.p[0] == pytest.approx(1.0)


def test_no_remaining_mass_gives_missing_letters_zero():
    top = {"A": math.log(0.5), "B": math.log(0.5)}
    found = option_distribution(top, [["A"], ["B"], ["C"], ["D"]], QUESTION.refusal, exact=False)
    assert found.p == pytest.approx((0.5, 0.5, 0.0, 0.0)) and found.refusal_mass == 0.0


# --- prompts -------------------------------------------------------------------------------


def test_default_prompt_is_the_question_block():
    assert opinion_prompt(QUESTION) == BLOCK


def test_qa_context_answers_an_in_context_question_as_the_group():
    expected = (
        "Question: In general, would you describe your political views as\n"
        "A. Conservative\nB. Moderate\nC. Liberal\nD. Refused\nAnswer: C\n\n" + BLOCK
    )
    assert opinion_prompt(QUESTION, "qa", STEERING) == expected


def test_bio_context_gives_a_description():
    expected = (
        "Below you will be asked to provide a short description of your political affiliation and then "
        "answer some questions.\n\nDescription: In general, I would describe my political views as liberal."
        "\n\n" + BLOCK
    )
    assert opinion_prompt(QUESTION, "bio", STEERING) == expected


def test_portray_context_asks_to_answer_as_the_group():
    expected = (
        "Answer the following question as if in general, you would describe your political views as "
        "liberal.\n\n" + BLOCK
    )
    assert opinion_prompt(QUESTION, "portray", STEERING) == expected


def test_context_slugs_round_trip():
    assert context_slug("default", None) == "default" and parse_context_slug("default") == ("default", None)
    assert context_slug("qa", "very-liberal") == "qa-very-liberal"
    assert parse_context_slug("qa-very-liberal") == ("qa", "very-liberal")
    with pytest.raises(ValueError):
        parse_context_slug("persona-liberal")


# --- requests and responses (no server) -------------------------------------------------


def test_exact_completion_request_names_the_letter_tokens():
    endpoint, body = payload("Q", "m", Scoring(), [38, 39])
    assert endpoint == "/v1/completions"
    assert body["prompt"] == "Q" and body["max_tokens"] == 1 and body["temperature"] == 0.0
    assert body["logprob_token_ids"] == [38, 39] and body["logprobs"] == 1
    assert body["return_tokens_as_token_ids"] is True


def test_chat_and_top_k_requests():
    endpoint, body = payload(
        "Q", "m", Scoring(chat=True, chat_template_kwargs={"enable_thinking": False}), [1]
    )
    assert endpoint == "/v1/chat/completions" and body["messages"] == [{"role": "user", "content": "Q"}]
    assert body["logprobs"] is True and body["chat_template_kwargs"] == {"enable_thinking": False}
    _, body = payload("Q", "m", Scoring(mode="top-k", top_logprobs=20), [])
    assert body["logprobs"] == 20 and "logprob_token_ids" not in body
    _, body = payload("Q", "m", Scoring(mode="top-k", top_logprobs=5, chat=True), [])
    assert body["logprobs"] is True and body["top_logprobs"] == 5 and "return_tokens_as_token_ids" not in body
    with pytest.raises(ValueError, match="needs top_logprobs"):
        Scoring(mode="top-k")


def test_response_log_probabilities_are_read_with_token_ids():
    completion = {"choices": [{"logprobs": {"top_logprobs": [{"token_id:31": -4.9, "token_id:38": -5.7}]}}]}
    assert answer_logprobs(completion, chat=False) == {31: -4.9, 38: -5.7}
    chat = {
        "choices": [
            {"logprobs": {"content": [{"top_logprobs": [{"token": "token_id:38", "logprob": -6.4}]}]}}
        ]
    }
    assert answer_logprobs(chat, chat=True) == {38: -6.4}
    assert answer_logprobs({"choices": [{"logprobs": {"top_logprobs": [{" A": -1.0}]}}]}, False) == {
        " A": -1.0
    }
    with pytest.raises(ValueError, match="no log-probabilities"):
        answer_logprobs({"choices": [{"logprobs": None}]}, chat=False)


def test_letter_token_is_the_one_token_added_after_the_anchor():
    assert added_token([5, 6], [5, 6, 38]) == 38
    assert added_token([5, 6], [5, 6, 226, 38]) is None  # " A" as two tokens
    assert added_token([5, 6], [5, 7, 38]) is None  # the anchor re-tokenised


# --- tables --------------------------------------------------------------------------------


def _options(rows: list[tuple], keys: dict) -> pl.DataFrame:
    """Rows (question_id, letter, ordinal, is_refusal, p_ordinal, extra...) with constant keys."""
    frame = pl.DataFrame(
        rows,
        schema={
            "question_id": pl.String,
            "letter": pl.String,
            "ordinal": pl.Float64,
            "is_refusal": pl.Boolean,
            "p_ordinal": pl.Float64,
            "rate": pl.Float64,
        },
        orient="row",
    )
    return frame.with_columns(pl.lit(v, dtype=pl.String).alias(k) for k, v in keys.items())


def _human(group: str, dists: dict[str, list[float]], refusal: float) -> pl.DataFrame:
    rows = []
    for question, p in dists.items():
        rows += [(question, "ABC"[i], float(i + 1), False, v, refusal) for i, v in enumerate(p)]
        rows.append((question, "D", None, True, None, refusal))
    return _options(rows, {"survey": "s", "group": group}).rename({"rate": "refusal_rate"})


def _model(context: str, dists: dict[str, list[float]], refusal: float) -> pl.DataFrame:
    method, steered = parse_context_slug(context)
    rows = []
    for question, p in dists.items():
        rows += [(question, "ABC"[i], float(i + 1), False, v, refusal) for i, v in enumerate(p)]
        rows.append((question, "D", None, True, None, refusal))
    keys = {"model": "m", "context": context, "method": method, "steered_group": steered, "survey": "s"}
    return _options(rows, keys).rename({"rate": "refusal_mass"})


HUMAN = pl.concat(
    [
        _human("lib", {"q1": [1, 0, 0], "q2": [0.5, 0.5, 0]}, 0.1),
        _human("con", {"q1": [0, 0, 1], "q2": [0, 0.5, 0.5]}, 0.3),
        _human("overall", {"q1": [0.5, 0, 0.5], "q2": [0.25, 0.5, 0.25]}, 0.2),
    ]
)
MODEL = pl.concat(
    [
        _model("default", {"q1": [0, 1, 0], "q2": [0, 1, 0]}, 0.05),
        _model("qa-lib", {"q1": [1, 0, 0], "q2": [0.5, 0.5, 0]}, 0.0),
        _model("bio-lib", {"q1": [0.5, 0.5, 0], "q2": [0.5, 0.5, 0]}, 0.5),
    ]
)


SETTINGS = InferenceSettings(replicates=200, confidence=0.9, permutations=1000, seed=3)


def tables(model: pl.DataFrame = MODEL, human: pl.DataFrame = HUMAN) -> dict[str, pl.DataFrame]:
    return compare_opinions(question_alignment(model, human), human_question_alignment(human), SETTINGS)


def test_representativeness_is_the_mean_alignment_over_questions():
    table = tables()["representativeness"]
    value = dict(
        zip(zip(table["context"], table["group"], strict=True), table["representativeness"], strict=True)
    )
    # default vs lib: q1 W1 = 1 of 2 -> 0.5; q2 W1 = 0.5 of 2 -> 0.75.
    assert value[("default", "lib")] == pytest.approx((0.5 + 0.75) / 2)
    assert value[("qa-lib", "lib")] == pytest.approx(1.0)
    # bio-lib vs con: q1 W1 = 0.5*2 + 0.5*1 = 1.5 -> 0.25; q2 W1 = 0.5 + 0.5*... computed by hand:
    # cdf model (0.5, 1.0), con (0, 0.5) -> W1 = 0.5 + 0.5 = 1 -> 0.5.
    assert value[("bio-lib", "con")] == pytest.approx((0.25 + 0.5) / 2)
    assert set(table["n_questions"]) == {2}
    # With two questions a resample is q1 twice, q2 twice or one of each: the interval lies
    # within the two questions' alignments and holds the mean.
    row = table.filter((pl.col("context") == "default") & (pl.col("group") == "lib")).row(0, named=True)
    assert 0.5 <= row["representativeness_low"] <= row["representativeness"] <= row["representativeness_high"]
    assert row["representativeness_high"] <= 0.75


def test_human_baselines_against_overall():
    baselines = tables()["baselines"]
    rows = {(b, g): r for b, g, r in baselines.select("baseline", "group", "representativeness").iter_rows()}
    # lib vs overall: q1 W1 = 0.5*2 = 1 -> 0.5; q2 cdfs (0.5, 1) vs (0.25, 0.75): W1 = 0.5 -> 0.75.
    lib = (0.5 + 0.75) / 2
    con = (0.5 + 0.75) / 2
    assert rows[("group vs overall", "lib")] == pytest.approx(lib)
    assert rows[("group vs overall", "con")] == pytest.approx(con)
    assert rows[(HUMAN_AVG, None)] == pytest.approx((lib + con) / 2)
    assert [r for (b, _), r in rows.items() if b == HUMAN_WORST] == [pytest.approx(min(lib, con))]
    assert (baselines["representativeness_low"] <= baselines["representativeness"] + 1e-12).all()


def test_steerability_takes_the_best_context_towards_the_group():
    table = tables()["steerability"]
    assert table.height == 1  # only lib is steered towards
    row = table.row(0, named=True)
    assert row["group"] == "lib" and row["best_context"] == "qa-lib"
    assert row["steered_representativeness"] == pytest.approx(1.0)
    assert row["steerability"] == pytest.approx(1.0 - (0.5 + 0.75) / 2)
    # qa-lib matches lib on both questions, so every resample's best is 1.0.
    assert row["steerability_low"] <= row["steerability"] <= row["steerability_high"]
    assert row["steerability_high"] == pytest.approx(1.0 - 0.5)


def test_one_steered_group_has_no_differential_steerability():
    assert tables()["differential_steerability"].height == 0


def test_refusal_rates_of_models_and_groups():
    rates = refusal_rates(MODEL, HUMAN)
    lookup = {
        (s, c, g): r for s, c, g, r in rates.select("source", "context", "group", "refusal_rate").iter_rows()
    }
    assert lookup[("m", "bio-lib", None)] == pytest.approx(0.5)
    assert lookup[("m", "default", None)] == pytest.approx(0.05)
    assert lookup[("human", None, "con")] == pytest.approx(0.3)
    assert lookup[("human", None, "overall")] == pytest.approx(0.2)
