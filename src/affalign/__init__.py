"""affalign: whose emotions, moral sentiments and opinions do language models reflect?

The package mirrors the workflow: one subpackage per stage of ``workflow/rules/``.

=============  =======================  ==============================================
subpackage     rule file                what it does
=============  =======================  ==============================================
``human``      ``human.smk``            ingest human posts: groups, topics, audit
``service``    ``generate.smk``         the model's vLLM server and the one HTTP client
``generate``   ``generate.smk``         prompts and generation shards
``classify``   ``classify.smk``         emotion / moral-foundation labels per post
``align``      ``align.smk``            distributions, 1 − JSD, baselines, comparisons
``figures``    ``report.smk``           heatmaps and bar charts
``opinions``   ``opinions.smk``         survey answers and positional alignment
``config``     ``common.smk``           checks of a config before any job runs
``io``         (every rule)             tables in, parquet + provenance out, atomic writes
``stats``      (align, opinions)        intervals, sign-flip test, Holm / BH adjustments
=============  =======================  ==============================================

A stage imports other stages only through their package (``from affalign.io import
write_table``), never their modules; ``tests/test_layout.py`` checks it.
"""
