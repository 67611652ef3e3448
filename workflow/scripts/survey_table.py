import sys
from pathlib import Path

# scriptdir is workflow/rules/../scripts (the rule file's folder joined with the script's
# relative path): resolve it before climbing to the checkout's src/.
sys.path.insert(0, str(Path(snakemake.scriptdir).resolve().parents[1] / "src"))

from affalign.io import run_logged
from affalign.opinions import write_survey_table

run_logged(
    snakemake.log[0],
    lambda: write_survey_table(
        questions=snakemake.input.questions,
        answers=snakemake.input.answers,
        settings=dict(snakemake.params.settings),
        survey=snakemake.wildcards.survey,
        output=snakemake.output[0],
    ),
)
