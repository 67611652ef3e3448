import sys
from pathlib import Path

# scriptdir is workflow/rules/../scripts (the rule file's folder joined with the script's
# relative path): resolve it before climbing to the checkout's src/.
sys.path.insert(0, str(Path(snakemake.scriptdir).resolve().parents[1] / "src"))

from affalign.align import AlignSettings, run_align_stage
from affalign.io import run_logged

settings = AlignSettings.from_params(snakemake.params.settings)
run_logged(
    snakemake.log[0],
    lambda: run_align_stage(
        generated=list(snakemake.input.generated),
        generated_affect=list(snakemake.input.generated_affect),
        human=list(snakemake.input.human),
        human_affect=list(snakemake.input.human_affect),
        settings=settings,
        outputs=dict(snakemake.output.items()),
        classifier=snakemake.wildcards.classifier,
    ),
)
