import sys
from pathlib import Path

# scriptdir is workflow/rules/../scripts (the rule file's folder joined with the script's
# relative path): resolve it before climbing to the checkout's src/.
sys.path.insert(0, str(Path(snakemake.scriptdir).resolve().parents[1] / "src"))

from affalign.align import AlignSettings, BootstrapSettings, DropPolicy, run_align_stage
from affalign.io import run_logged

options = snakemake.params.settings
settings = AlignSettings(
    groups=tuple(options["groups"]),
    none_bin=options["none_bin"],
    policy=DropPolicy(
        empty=options["drop_empty"],
        refusals=options["drop_refusals"],
        degenerate=options["drop_degenerate"],
    ),
    bootstrap=BootstrapSettings(
        replicates=options["bootstrap_replicates"],
        confidence=options["confidence"],
        seed=options["seed"],
        permutations=options["permutations"],
        alpha=options["alpha"],
    ),
    plutchik_weight=options["plutchik_weight"] if options["plutchik_smoothing"] else None,
)
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
