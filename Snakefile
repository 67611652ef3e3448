# affalign: whose emotions and moral sentiments do language models reflect?
#
# Output contract (paths and columns; later stages extend it, never change it silently).
# Names in braces are config slugs: {model}, {issue}, {topic}, {classifier}; {prompt_type}
# is "default" or the group a prompt steers towards. Every parquet file carries its
# provenance as JSON under the metadata key "affalign" (see src/affalign/io/parquet.py).
#
#   results/human/{issue}/posts.parquet
#       post_id, issue, topic, group, text
#   results/human/{issue}/dropped.csv
#       issue, reason, rows (input rows left out and why)
#   results/human/{issue}/users.csv
#       issue, user, posts, urls, scored_urls, score, group, reason (ideology audit)
#   results/human/{issue}/quality.csv  (+ quality.md, readable)
#       issue, topic, group, posts, users, status (kept/excluded), reason
#   results/services/{model}.json                                   (service, transient)
#       address of the model's vLLM server while its shard jobs run
#   results/services/judge/{model}.json                             (service, transient)
#       address of a judge's own server while LLM classifiers' jobs run (type: llm)
#   results/endpoints/{model}.json              (endpoint models, positional stage, auto)
#       method, top_logprobs, detail, host, served_model: the log-probability method
#       detected before the run (no service file: endpoint models have no server job)
#   results/services/job_account.parquet  (+ job_account.csv)
#       model, session, server_started_at, host, slurm_job_id, gpus, load_s, shards,
#       requests, output_tokens, generation_s, tokens_per_s, idle_tail_s, allocation_s,
#       generating_share  (what each model's server job spent its time on)
#   results/generated/{model}/{issue}/{topic}/{prompt_type}.parquet
#       post_id, model, issue, topic, prompt_type, index, template_id, seed, prompt,
#       raw_text, text, finish_reason, output_tokens, is_empty, is_degenerate, is_refusal
#   results/classify/{classifier}/generated/{model}/{issue}/{topic}/{prompt_type}.parquet
#   results/classify/{classifier}/human/{issue}.parquet
#       post_id, p_<label> (score), y_<label> (bool) for each of the classifier's labels
#       (type: llm: p_ is 1.0/0.0; posts the judge's answer could not be read for are left
#       out and counted in the provenance: unparsed, unparsed_post_ids)
#   results/align/{classifier}/distributions.parquet
#       source, prompt_type, issue, topic, group, label, count, n_posts, total, p
#   results/align/{classifier}/alignment.parquet  (+ alignment.csv)
#       model, prompt_type, issue, topic, group, jsd, alignment (published plug-in score, a
#       point value: intervals are on the corrected scale only), n_model_posts, n_human_posts,
#       unlabelled_model, unlabelled_human (share of posts without a label),
#       ceiling (mean plug-in score of a perfect model of n_model_posts posts drawn from the
#       group's posts), alignment_corrected (size-corrected score; may exceed 1 by noise),
#       corrected_low, corrected_high (its confidence interval: shifted bootstrap of the
#       corrected divergence), interval_ok (false: a cell smaller than the measured range,
#       whisker dashed), ceiling_corrected, p_distinguishable (permutation test, model vs group), baseline_gap (corrected score -
#       corrected baseline), p_below_baseline (one-sided), below_baseline (p < align.alpha)
#   results/align/{classifier}/partisan_baseline.parquet  (+ partisan_baseline.csv)
#       issue, topic, group_a, group_b, jsd, alignment, n_posts_a, n_posts_b,
#       unlabelled_a, unlabelled_b, ceiling (identical groups of these sizes),
#       alignment_corrected, corrected_low, corrected_high, interval_ok, ceiling_corrected, p_distinguishable (permutation test of identical groups)
#   results/align/{classifier}/liberal_tendency.parquet  (+ .csv)
#       model, issue, prompt_type, tendency, n_topics, wilcoxon_statistic, p_value (published:
#       plug-in scores, Wilcoxon), tendency_corrected, corrected_low, corrected_high,
#       interval_ok, p_signflip (sign-flip test over topics), p_holm, p_bh
#       (adjusted across all tendency tests of the classifier), min_attainable_p
#   results/align/{classifier}/steerability.parquet  (+ .csv)
#       model, issue, group, steerability, n_topics, steerability_corrected, corrected_low,
#       corrected_high, interval_ok (also for differential), p_signflip, p_holm, p_bh,
#       min_attainable_p, differential (steered towards group - steered towards the other),
#       differential_low, differential_high, differential_n_topics, differential_p_signflip,
#       differential_p_holm, differential_p_bh, differential_min_attainable_p (one family:
#       all steerability and differential tests of the classifier)
#   results/align/{classifier}/below_baseline.csv
#       model, prompt_type, issue, group, share_below_baseline (published: point comparison),
#       n_topics, share_below_tested, share_below_tested_low, share_below_tested_high
#   results/align/{classifier}/model_summary.parquet  (+ .csv)
#       model, prompt_type, issue, group, n_topics, alignment, ceiling, alignment_corrected,
#       corrected_low, corrected_high, interval_ok, ceiling_corrected,
#       baseline_corrected, baseline_gap, gap_low, gap_high, n_below, n_tested,
#       share_below_tested, share_below_low, share_below_high, unlabelled_model
#       (means over topics; intervals: topics, then posts; share interval: Wilson)
#   results/align/{classifier}/sensitivity.csv
#       counting (whole, fractional), unlabelled (dropped, none bin), configured, conclusion,
#       n_conclusions, n_changed, max_abs_change
#   results/align/{classifier}/alignment_matrix.csv
#       row, prompt_type, compared_with, one column per issue/topic (1 - JSD)
#   results/align/{classifier}/dropped.csv
#       model, reason, rows (generations left out of the distributions)
#   results/align/label_samples.csv
#       source (human or a model), issue, group, prompt_type, topic, post_id, text, one
#       column per classifier: the labels it gave (';'-joined; none; (unparsed))
#   results/align/robustness.csv  (studies with two or more classifiers)
#       classifier_a, classifier_b, measure (alignment_corrected, tendency, steerability,
#       baseline_gap, kappa), label (kappa: a label both classifiers have), n, spearman,
#       spearman_p, n_significant, n_sign_agrees, share_sign_agrees, kappa, kappa_low,
#       kappa_high
#   results/gold/{classifier}/posts.parquet              (classifiers with a gold file)
#       post_id, text (as in the gold file, as ingestion keeps human posts' text), y_<label>
#       (bool: the gold labels, for each label of the classifier the file has)
#   results/classify/{classifier}/gold.parquet
#       post_id, p_<label>, y_<label>: the classifier's labels of the gold posts (as above)
#   results/align/{classifier}/gold_f1.csv
#       label (each scored label, then macro), n, support, precision, recall, f1, f1_low,
#       f1_high (seeded percentile bootstrap over posts; empty: undefined)
#   results/figures/{classifier}/alignment_heatmap.png, baseline_comparison.png,
#       liberal_tendency.png, steerability.png, label_distributions.png, design.png
#
# Design (precision predicted from the human posts alone; no model runs for it):
#   results/design/{classifier}/cells.parquet  (+ .csv)
#       issue, topic, group, n_group_posts, n_model, scenario (identity, other group), sd,
#       halfwidth
#   results/design/{classifier}/summary.parquet  (+ .csv)
#       issue, group, n_model, n_topics, configured_topics, cell_halfwidth,
#       model_level_halfwidth, mde_tendency, mde_steerability, mde_differential
#   results/report.html  (snakemake --report results/report.html)
#
# Positional (opinion) alignment, only with an `opinions:` section; {survey} is a survey
# topic slug, {context} is "default" or <qa|bio|portray>-<group> (steered towards a group).
# Option rows are one per answer option, letters A, B, ... in display order.
#   results/opinions/survey/{survey}.parquet
#       survey, question_id, group (every steered and compare-only group, and "overall"),
#       letter, option, ordinal, is_refusal, weight, p, p_ordinal, refusal_rate,
#       n_responses (null for the distribution form), topic (the question's topic categories
#       joined by ";", null without any)
#   results/opinions/{model}/{survey}/{context}.parquet
#       model, survey, context, method, steered_group, question_id, letter, option, ordinal,
#       is_refusal, logprob, floored, p, p_ordinal, refusal_mass, prompt
#   results/opinions/question_alignment.parquet
#       model, context, method, steered_group, survey, question_id, group, alignment
#   results/opinions/representativeness.parquet  (+ .csv)
#       model, context, method, steered_group, group, representativeness, n_questions,
#       representativeness_low, representativeness_high
#   results/opinions/human_baselines.parquet  (+ .csv)
#       baseline ("group vs overall", "human (avg)", "human (worst)"), group,
#       representativeness, n_questions, representativeness_low, representativeness_high
#   results/opinions/steerability.parquet  (+ .csv)       (best of three, as in the paper)
#       model, group, default_representativeness, best_context,
#       steered_representativeness, steerability, n_questions, steerability_low,
#       steerability_high
#   results/opinions/steerability_slope.parquet  (+ .csv)
#       model, slope (OLS of steered on default representativeness, no intercept),
#       slope_low, slope_high, n_groups
#   results/opinions/differential_steerability.parquet  (+ .csv)
#       model, method, group, default_representativeness, towards_representativeness,
#       away_representativeness, differential_steerability (towards - away),
#       differential_low, differential_high, p_value (paired sign-flip test), p_holm, p_bh
#       (adjusted across all differential tests of the run), n_questions, n_other_groups
#   results/opinions/consistency.parquet  (+ .csv)
#       model, context, method, steered_group, best_group, consistency, n_surveys, n_groups,
#       n_topics (categories used), consistency_note (why consistency is empty, if it is)
#   results/opinions/refusals.parquet  (+ .csv)
#       source (model or "human"), context, steered_group, group, refusal_rate, n_questions
#   results/figures/opinions/representativeness_heatmap.png, steering.png
# p sums to 1 over a question's options, p_ordinal over its non-refusal options; opinion
# alignment = 1 - W1(model, group) / (max ordinal - min ordinal), in [0, 1];
# representativeness is its mean over questions. *_low/*_high: percentile intervals from
# resampling questions (opinions.bootstrap_replicates, opinions.confidence).
#
# alignment = 1 - Jensen-Shannon distance (log base 2), in [0, 1]. Interval, test, smoothing
# and "none"-bin settings are recorded in each align output's provenance.
# Logs mirror outputs under logs/; Snakemake's benchmark tables (run time, memory) of the
# classify and align jobs under results/benchmarks/ (the scripts in benchmarks/ are the
# project's own performance benchmarks).

from snakemake.utils import min_version

min_version("9.0")


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/human.smk"
include: "workflow/rules/generate.smk"
include: "workflow/rules/classify.smk"
include: "workflow/rules/align.smk"
include: "workflow/rules/design.smk"
include: "workflow/rules/report.smk"
include: "workflow/rules/opinions.smk"


rule all:
    default_target: True
    input:
        get_final_outputs(),
