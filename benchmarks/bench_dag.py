"""How fast Snakemake plans the study at the paper's size.

Writes a config with 36 models (hub ids; nothing is loaded), COVID-19 with 26 and Roe v.
Wade with 24 topics, 3 prompt types and 2 classifiers, dry-runs the workflow on it (the
local profile, no GPU) and prints the number of jobs and the seconds to plan.

Usage: ``python benchmarks/bench_dag.py [--models 36]``
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
TOPICS = {"covid-19": ("COVID-19", 26), "roe-v-wade": ("Roe v. Wade", 24)}


def study(models: int) -> dict:
    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    engine, resources = next(iter(config["models"].values()))["engine"], {"mem_mb": 64000, "runtime": 240}
    config["models"] = {
        f"model-{m:02d}": {
            "hub_id": f"example-org/model-{m:02d}",
            "revision": "main",
            "kind": "instruct" if m % 3 == 0 else "base",
            "engine": engine,
            "resources": resources,
        }
        for m in range(models)
    }
    config["issues"] = {
        issue: {
            "name": name,
            "topics": {
                f"topic-{t:02d}": {"name": f"topic {t}", "keywords": [f"word{t}"]} for t in range(count)
            },
        }
        for issue, (name, count) in TOPICS.items()
    }
    config["prompts"] = str(REPO / config["prompts"])
    for table in config["human"].values():
        table["path"] = str(REPO / table["path"])
    return config


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=int, default=36)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="affalign-dag-") as scratch:
        workdir = Path(scratch)
        configfile = workdir / "study.yaml"
        configfile.write_text(yaml.safe_dump(study(args.models), sort_keys=False))
        command = [
            sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"),
            "--directory", str(workdir),
            "--workflow-profile", str(REPO / "profiles" / "local"), "--configfile", str(configfile),
            "--dry-run", "--quiet", "rules",
        ]  # fmt: skip
        began = time.perf_counter()
        result = subprocess.run(command, capture_output=True, text=True)
        seconds = time.perf_counter() - began
    if result.returncode != 0:
        print(result.stdout[-3000:], result.stderr[-3000:])
        return 1
    total = next((line.split()[1] for line in result.stdout.splitlines() if line.startswith("total")), "?")
    print(f"study: {args.models} models x (26 + 24) topics x 3 prompt types, 2 classifiers")
    print(f"jobs planned: {total}")
    print(f"seconds to plan (dry run, wall): {seconds:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
