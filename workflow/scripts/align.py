import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parents[1] / "src"))

from affalign.alignment import DropPolicy, run_align_stage
from affalign.jobs import run_logged

settings = snakemake.params.settings
run_logged(
    snakemake.log[0],
    lambda: run_align_stage(
        generated=list(snakemake.input.generated),
        generated_affect=list(snakemake.input.generated_affect),
        human=list(snakemake.input.human),
        human_affect=list(snakemake.input.human_affect),
        groups=settings["groups"],
        none_bin=settings["none_bin"],
        policy=DropPolicy(
            empty=settings["drop_empty"],
            refusals=settings["drop_refusals"],
            degenerate=settings["drop_degenerate"],
        ),
        outputs=dict(snakemake.output.items()),
        classifier=snakemake.wildcards.classifier,
    ),
)
