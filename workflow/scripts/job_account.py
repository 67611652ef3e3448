import sys
from pathlib import Path

# scriptdir is workflow/rules/../scripts (the rule file's folder joined with the script's
# relative path): resolve it before climbing to the checkout's src/.
sys.path.insert(0, str(Path(snakemake.scriptdir).resolve().parents[1] / "src"))

from affalign.io import run_logged
from affalign.service import write_job_account

run_logged(
    snakemake.log[0],
    lambda: write_job_account(
        list(snakemake.input),
        list(snakemake.params.sessions),
        snakemake.output.table,
        snakemake.output.csv,
    ),
)
