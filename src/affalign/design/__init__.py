"""The design stage: how precise a study will be, predicted before any model runs.

Reads the ingested human posts (``results/human/{issue}/posts.parquet``) and their affect
files from the classify stage (``results/classify/{classifier}/human/{issue}.parquet``);
writes ``results/design/{classifier}/cells`` (per issue × topic × group × model cell size:
SD and 95 % half-width of a cell's corrected alignment, near identity and at the other group's
distance) and ``results/design/{classifier}/summary`` (per issue × group × size × topic count:
cell and model-level half-widths, minimum detectable tendency, steerability and differential
steerability at ``align.alpha`` and 80 % power). Rule ``design`` (``workflow/rules/design.smk``)
drives :func:`~affalign.design.stage.run_design_stage`; ``affalign plan`` reads the summary to
print precision next to cost.

* :mod:`~affalign.design.precision` — the predictions (the align stage's own estimators on
  simulated cells) and their assumptions;
* :mod:`~affalign.design.stage` — the tables and the job.
"""

from affalign.design.stage import (
    SIZE_MULTIPLES,
    DesignSettings,
    design_params,
    predict_design,
    run_design_stage,
)

__all__ = ["SIZE_MULTIPLES", "DesignSettings", "design_params", "predict_design", "run_design_stage"]
