"""The human stage through Snakemake: the raw-export scenario (.test/raw-export), a small raw
export with known answers, config errors that stop the run before any job, and jobs that run
this checkout's package whatever else is on the Python path."""

import copy
import json
import re
from pathlib import Path

import polars as pl
import pytest
from conftest import REPO, run_snakemake, scenario_study, write_config

from affalign.io.parquet import read_provenance

BIAS = "domain,lean\nleft-daily.com,-2\nlefty.org,-1\ncentre.net,0\nright-daily.com,2\nrighty.co.uk,1\n"
RAW_COLUMNS = {
    "post_id": "id_str",
    "text": ["extended_tweet.full_text", "full_text", "text"],
    "user": "user.id_str",
    "urls": "entities.urls",
}


def tweet(post_id: int, user: str, text: str, *urls: str) -> dict:
    return {
        "id": post_id,
        "id_str": str(post_id),
        "full_text" if post_id % 3 else "text": text,
        "user": {"id_str": user, "screen_name": user.upper()},
        "entities": {
            "urls": [{"url": f"https://t.co/{post_id}{i}", "expanded_url": u} for i, u in enumerate(urls)]
        },
    }


def small_export() -> list[dict]:
    return [
        tweet(101, "ann", "Masks protect the vulnerable #MaskUp", "https://www.Left-Daily.com/a"),
        tweet(102, "ann", "Vaccines are safe, get your booster", "https://lefty.org/b"),
        tweet(103, "ann", "Stay at home if you can", "https://m.left-daily.com/c"),
        tweet(104, "bea", "No mask mandate for my kids", "https://www.right-daily.com/d"),
        tweet(105, "bea", "I will not take the vaccine", "https://news.righty.co.uk/e"),
        tweet(106, "cal", "Mask rules are overreach", "https://right-daily.com/f"),
        tweet(107, "cal", "Vaccine passports, no thanks", "https://right-daily.com/g"),
        tweet(108, "dee", "A mask and a vaccine for everyone", "http://lefty.org/h"),
        tweet(109, "eli", "Masks? Meh.", "https://centre.net/i"),
        tweet(110, "fin", "Vaccine news", "https://t.co/never-expanded"),
        tweet(111, "bea", "End the lockdown now", "https://right-daily.com/j"),
        tweet(112, "dee", "Nothing on topic", "https://lefty.org/k"),
    ]


@pytest.fixture()
def raw_export_scenario(tmp_path: Path) -> tuple[Path, dict]:
    """A working folder and the raw-export scenario's config (stand-in model folders)."""
    return scenario_study(tmp_path, "raw-export")


def raw_study(workdir: Path, config: dict) -> tuple[Path, Path]:
    """The scenario with covid-19 read from a 12-post export whose outcome is known by hand."""
    export = workdir / "input" / "covid-export.jsonl"
    export.parent.mkdir()
    export.write_text("".join(json.dumps(record) + "\n" for record in small_export()), encoding="utf-8")
    bias = workdir / "input" / "bias.csv"
    bias.write_text(BIAS)
    config["human"]["covid-19"] = {
        "path": str(export),
        "columns": copy.deepcopy(RAW_COLUMNS),
        "group_from": "domains",
        "topic_from": "keywords",
    }
    config["ideology"] = {
        "domain_table": str(bias),
        "domain_columns": {"domain": "domain", "score": "lean"},
        "min_scored_urls": 1,
        "liberal_max": -0.5,
        "conservative_min": 0.5,
    }
    config["topic_assignment"] = {"multiple_topics": "all", "min_posts_per_group": 2}
    return export, bias


def human_stage(workdir: Path, config: dict, *issues: str, env: dict[str, str] | None = None):
    configfile = write_config(workdir / "study.yaml", config)
    targets = [f"results/human/{issue}/posts.parquet" for issue in issues]
    return run_snakemake(workdir, "--configfile", str(configfile), "--", *targets, timeout=300, env=env)


def test_raw_export_through_the_human_stage(raw_export_scenario):
    workdir, config = raw_export_scenario
    export, bias = raw_study(workdir, config)
    before = export.read_bytes(), bias.read_bytes()
    result = human_stage(workdir, config, "covid-19")
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "WARNING: issue 'covid-19': topic 'lockdowns' excluded from alignment" in output
    assert (export.read_bytes(), bias.read_bytes()) == before

    out = workdir / "results" / "human" / "covid-19"
    posts = pl.read_parquet(out / "posts.parquet")
    assert posts.columns == ["post_id", "issue", "topic", "group", "text"]
    assert posts.schema == {column: pl.String for column in posts.columns}
    assert set(zip(posts["post_id"], posts["topic"], posts["group"], strict=True)) == {
        ("101", "mask-mandates", "liberal"),
        ("102", "vaccines", "liberal"),
        ("104", "mask-mandates", "conservative"),
        ("105", "vaccines", "conservative"),
        ("106", "mask-mandates", "conservative"),
        ("107", "vaccines", "conservative"),
        ("108@mask-mandates", "mask-mandates", "liberal"),
        ("108@vaccines", "vaccines", "liberal"),
    }
    provenance = read_provenance(out / "posts.parquet")
    assert provenance["group_from"] == "domains" and provenance["excluded_topics"].keys() == {"lockdowns"}

    users = pl.read_csv(out / "users.csv")
    assert users.columns == ["issue", "user", "posts", "urls", "scored_urls", "score", "group", "reason"]
    groups = dict(zip(users["user"], users["group"], strict=True))
    assert groups == {"ann": "liberal", "bea": "conservative", "cal": "conservative", "dee": "liberal"} | {
        "eli": None,
        "fin": None,
    }
    assert users.filter(pl.col("user") == "bea")["score"].to_list() == [5 / 3]

    quality = pl.read_csv(out / "quality.csv")
    assert quality.columns == ["issue", "topic", "group", "posts", "users", "status", "reason"]
    lockdowns = quality.filter(pl.col("topic") == "lockdowns")
    assert lockdowns["status"].to_list() == ["excluded", "excluded"]
    assert lockdowns["posts"].to_list() == [1, 1]

    dropped = dict(pl.read_csv(out / "dropped.csv").select("reason", "rows").iter_rows())
    assert dropped == {
        "user has too few scored URLs": 1,
        "user's score between the thresholds": 1,
        "empty text": 0,
        "no topic keyword": 1,
        "topic below minimum posts": 2,
    }
    report = (out / "quality.md").read_text()
    assert "## Topics excluded from alignment" in report and "`lockdowns`" in report

    target = "results/human/covid-19/posts.parquet"
    again = run_snakemake(workdir, "--dry-run", "--configfile", str(workdir / "study.yaml"), "--", target)
    assert "Nothing to be done" in again.stdout + again.stderr, again.stdout + again.stderr


def test_the_raw_export_scenario_runs_the_human_stage(raw_export_scenario):
    """The demo's raw exports and domain table (.test/raw-export) give both groups in every topic."""
    workdir, config = raw_export_scenario
    result = human_stage(workdir, config, *config["issues"])
    assert result.returncode == 0, result.stdout + result.stderr
    for issue, spec in config["issues"].items():
        out = workdir / "results" / "human" / issue
        quality = pl.read_csv(out / "quality.csv")
        assert set(quality["status"]) == {"kept"}, quality
        assert quality["posts"].min() >= 3
        posts = pl.read_parquet(out / "posts.parquet")
        assert set(posts["topic"]) == set(spec["topics"])
        users = pl.read_csv(out / "users.csv")
        assert set(users["group"].drop_nulls()) == {"liberal", "conservative"}
        # The users' reasons in the same words as their posts' rows in dropped.csv.
        reasons = {"user has too few scored URLs", "user's score between the thresholds"}
        assert set(users["reason"].drop_nulls()) == reasons
        dropped = pl.read_csv(out / "dropped.csv")
        assert reasons <= set(dropped.filter(pl.col("rows") > 0)["reason"])


def rejected(workdir: Path, config: dict, *fragments: str) -> None:
    result = human_stage(workdir, config, "covid-19")
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    for fragment in fragments:
        assert fragment in output, output
    assert not (workdir / "results" / "human").exists()


def test_bad_domain_score_stops_before_any_job(raw_export_scenario):
    workdir, config = raw_export_scenario
    _, bias = raw_study(workdir, config)
    bias.write_text(BIAS + "broken.com,very left\n")
    rejected(
        workdir,
        config,
        "study.yaml",
        "ideology.domain_table",
        str(bias),
        "column 'lean' row 6",
        "'very left'",
    )


def test_thresholds_out_of_order(raw_export_scenario):
    workdir, config = raw_export_scenario
    raw_study(workdir, config)
    config["ideology"]["liberal_max"] = 1
    rejected(
        workdir, config, "study.yaml", "ideology.liberal_max 1 must be below ideology.conservative_min 0.5"
    )


def test_unknown_policy_and_missing_domain_table_key(raw_export_scenario):
    workdir, config = raw_export_scenario
    raw_study(workdir, config)
    config["topic_assignment"]["multiple_topics"] = "random"
    rejected(workdir, config, "study.yaml", "'random' is not one of ['all', 'first', 'drop']")
    config["topic_assignment"]["multiple_topics"] = "first"
    del config["ideology"]["domain_table"]
    rejected(workdir, config, "study.yaml", "ideology.domain_table is required: human.covid-19.group_from")


def test_missing_user_column_in_the_export(raw_export_scenario):
    workdir, config = raw_export_scenario
    export, _ = raw_study(workdir, config)
    config["human"]["covid-19"]["columns"]["user"] = "author.id"
    rejected(workdir, config, "study.yaml", "human.covid-19", str(export), "column 'author.id' (for 'user'")


def test_a_data_error_stops_the_job_with_file_column_and_row_and_no_traceback(raw_export_scenario):
    workdir, config = raw_export_scenario
    export, _ = raw_study(workdir, config)
    records = small_export()
    records[2]["id_str"] = "101"
    export.write_text("".join(json.dumps(record) + "\n" for record in records), encoding="utf-8")
    result = human_stage(workdir, config, "covid-19")
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    line = (
        f"affalign: data error: {export}: post id '101' in row 1 is not unique "
        "(column 'id_str'; again in row 3)"
    )
    assert line in output, output
    # The console (the job's stderr and its log, which the profile prints) has no traceback;
    # the log says where it is kept.
    assert "Traceback" not in output and "HumanDataError" not in output, output
    log = workdir / "logs" / "ingest_human" / "covid-19.log"
    assert f"(traceback for a bug report: {log.relative_to(workdir)}.traceback)" in log.read_text()
    assert "HumanDataError" in Path(f"{log}.traceback").read_text()
    assert not (workdir / "results" / "human" / "covid-19" / "posts.parquet").exists()


def test_jobs_import_the_package_from_the_workflows_own_checkout(study, tmp_path):
    """Another copy of affalign earlier on the Python path (another clone's src, an editable
    install) must not be what a job runs: the scripts put this checkout's src/ first."""
    decoy = tmp_path / "other-clone" / "src" / "affalign"
    decoy.mkdir(parents=True)
    (decoy / "__init__.py").write_text(
        'raise ImportError("the decoy affalign of another clone was imported")\n'
    )
    workdir, config = study
    result = human_stage(workdir, config, "covid-19", env={"PYTHONPATH": str(decoy.parent)})
    output = result.stdout + result.stderr
    log = (workdir / "logs" / "ingest_human" / "covid-19.log").read_text()
    assert result.returncode == 0, output + log
    assert "decoy" not in output + log
    assert read_provenance(workdir / "results" / "human" / "covid-19" / "posts.parquet")["stage"] == "human"


def test_every_script_job_puts_the_checkouts_src_first():
    """Every script starts as the ingest script does, whose import path the test above runs."""
    scripts = sorted((REPO / "workflow" / "scripts").glob("*.py"))
    first_lines = (REPO / "workflow" / "scripts" / "ingest_human.py").read_text().splitlines()
    preamble = first_lines[: next(i for i, line in enumerate(first_lines) if "sys.path.insert" in line) + 1]
    # Exactly the scripts the rules run (model-side jobs are `python -m` modules instead).
    rules = "".join(path.read_text() for path in (REPO / "workflow" / "rules").glob("*.smk"))
    assert {script.name for script in scripts} == set(re.findall(r'"\.\./scripts/([\w.]+)"', rules))
    for script in scripts:
        assert script.read_text().splitlines()[: len(preamble)] == preamble, script
