import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parents[1] / "src"))

from affalign.jobs import run_logged
from affalign.serve import run_service

run_logged(
    snakemake.log[0],
    lambda: run_service(
        model=snakemake.wildcards.model,
        model_source=snakemake.params.source,
        revision=snakemake.params.revision,
        engine=snakemake.params.engine,
        seed=snakemake.params.seed,
        service_file=snakemake.output[0],
        server_log=snakemake.params.server_log,
        # Operational, not part of any output: read from the config so changing it
        # reruns nothing.
        start_timeout_s=snakemake.config["generation"]["server_start_timeout_s"],
    ),
)
