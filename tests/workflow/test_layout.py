"""The package mirrors the workflow: every stage reaches another only through its package
(also from the rule files and the workflow's scripts), packages import only packages of
lower layers, the package root holds nothing, and the import graph has no cycles."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
from conftest import REPO

PACKAGE = REPO / "src" / "affalign"
RULES = REPO / "workflow" / "rules"
SCRIPTS = REPO / "workflow" / "scripts"

# Bottom to top: a package imports only its own modules and packages of lower layers.
LAYERS = (
    ("foundation: files, tables, provenance, statistics", {"io", "stats"}),
    ("model servers and their clients", {"service"}),
    ("stages that make posts and answers", {"human", "generate", "opinions"}),
    ("classification", {"classify"}),
    ("scoring and figures", {"align", "figures"}),
    ("study design", {"design"}),
    ("config, pre-flight and plan", {"config"}),
)


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path) -> set[str]:
    """Every affalign module a file imports, at any depth (imports inside functions too)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name.startswith("affalign")}
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("affalign"):
            found.add(node.module)
            # `from affalign.x import y` may name the module affalign.x.y.
            found |= {f"{node.module}.{alias.name}" for alias in node.names}
    return found


def import_graph() -> dict[str, set[str]]:
    modules = {module_name(path): path for path in PACKAGE.rglob("*.py")}
    return {name: imports_of(path) & modules.keys() - {name} for name, path in modules.items()}


def stage_of(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else None


def test_every_module_lives_in_a_stage_package_with_a_docstring():
    loose = [path.name for path in PACKAGE.glob("*.py") if path.name != "__init__.py"]
    assert loose == [], f"modules outside a stage subpackage: {loose}"
    for package in (path for path in PACKAGE.iterdir() if path.is_dir() and path.name != "__pycache__"):
        init = package / "__init__.py"
        assert init.is_file(), f"{package} is not a package"
        docstring = ast.get_docstring(ast.parse(init.read_text()))
        assert docstring and len(docstring) > 80, f"{init}: say what the stage reads, writes, which rule"


def test_every_rule_file_has_its_stage_package():
    stages = {path.name for path in PACKAGE.iterdir() if (path / "__init__.py").is_file()}
    for rule_file in RULES.glob("*.smk"):
        stage = {"common": "config", "report": "figures"}.get(rule_file.stem, rule_file.stem)
        assert stage in stages, f"{rule_file.name} has no package affalign.{stage}"


def test_stages_import_each_other_only_through_their_packages():
    offenders = []
    for module, targets in import_graph().items():
        for target in targets:
            source_stage, target_stage = stage_of(module), stage_of(target)
            if target_stage and source_stage != target_stage and target.count(".") > 1:
                offenders.append(f"{module} -> {target}")
    assert offenders == [], "import another stage's package, not its modules:\n" + "\n".join(offenders)


def layer_of(package: str) -> int:
    return next(index for index, (_, packages) in enumerate(LAYERS) if package in packages)


def test_every_package_has_one_layer():
    packages = {path.name for path in PACKAGE.iterdir() if (path / "__init__.py").is_file()}
    placed = [package for _, members in LAYERS for package in members]
    assert sorted(placed) == sorted(set(placed)), "a package placed in two layers"
    assert set(placed) == packages, (
        f"place these in LAYERS: {packages - set(placed)}; gone: {set(placed) - packages}"
    )


def test_packages_import_only_lower_layers():
    offenders = []
    for module, targets in import_graph().items():
        source = stage_of(module)
        for target in targets:
            destination = stage_of(target)
            if source and destination and source != destination and layer_of(destination) >= layer_of(source):
                layers = f"{LAYERS[layer_of(source)][0]} -> {LAYERS[layer_of(destination)][0]}"
                offenders.append(f"{module} -> {target} ({layers})")
    assert offenders == [], "imports upwards or sideways (see LAYERS):\n" + "\n".join(sorted(offenders))


# The one-line message for a module missing from a job's interpreter must be installed before
# any package imports a third-party module, and only the root runs before every package.
ROOT_NAMES = {
    "missing_module_message",
    "missing_module_line",
    "_job_log",
    "_runs_a_job",
    "_install_missing_module_hook",
}


def test_the_package_root_holds_only_the_missing_module_hook():
    """``import affalign.<stage>`` runs the root first: it imports the standard library only,
    defines nothing but the missing-module hook (installed only in a job), and only the
    job edge (``affalign.io.jobs``) reaches into it."""
    root = ast.parse((PACKAGE / "__init__.py").read_text())
    imported = {alias.name for node in root.body if isinstance(node, ast.Import) for alias in node.names}
    assert imported <= {"sys"} and not any(isinstance(node, ast.ImportFrom) for node in root.body), imported
    defined = {node.name for node in root.body if isinstance(node, ast.FunctionDef | ast.ClassDef)}
    assert defined == ROOT_NAMES, (
        f"the package root may hold only the missing-module hook: {defined - ROOT_NAMES}"
    )
    importers = sorted(module for module, path in modules().items() if "affalign" in imports_of(path))
    assert importers == ["affalign.io.jobs"], f"these import the package root: {importers}"


def modules() -> dict[str, Path]:
    return {module_name(path): path for path in PACKAGE.rglob("*.py")}


# `from affalign.x import (a, b)` and `import affalign.x.y` in a rule file (not Python: read as text).
SMK_IMPORT = re.compile(
    r"^[ \t]*(?:from[ \t]+(affalign[\w.]*)[ \t]+import[ \t]+(\([^)]*\)|[^\n]*)|import[ \t]+(affalign[\w.]*))",
    re.MULTILINE,
)


def workflow_imports() -> dict[str, set[str]]:
    """Every affalign module each rule file and workflow script imports (a name imported from a
    package counts as the module of that name where one exists)."""
    found: dict[str, set[str]] = {}
    for script in sorted(SCRIPTS.glob("*.py")):
        found[f"workflow/scripts/{script.name}"] = imports_of(script)
    for rule_file in sorted(RULES.glob("*.smk")):
        names: set[str] = set()
        for module, imported, plain in SMK_IMPORT.findall(rule_file.read_text()):
            if plain:
                names.add(plain)
                continue
            names.add(module)
            for name in re.split(r"[\s,()]+", imported.split("#")[0]):
                if name and name != "as":
                    names.add(f"{module}.{name}")
        found[f"workflow/rules/{rule_file.name}"] = names
    return found


def test_the_workflow_imports_stages_only_through_their_packages():
    known = modules().keys()
    offenders = [
        f"{source}: {target}"
        for source, targets in workflow_imports().items()
        for target in sorted(targets & known)
        if target.count(".") > 1
    ]
    assert offenders == [], "import affalign.<package>, not its modules:\n" + "\n".join(offenders)


def test_the_workflow_import_check_finds_a_module_import(tmp_path, monkeypatch):
    rules, scripts = tmp_path / "rules", tmp_path / "scripts"
    rules.mkdir()
    scripts.mkdir()
    (rules / "x.smk").write_text(
        "from affalign.config import (\n    check_config,\n    plan,\n)\nimport affalign.io.jobs\n"
    )
    (scripts / "x.py").write_text(
        "from affalign.align.stage import run_align_stage\nfrom affalign.io import run_logged\n"
    )
    monkeypatch.setattr(__import__(__name__), "RULES", rules)
    monkeypatch.setattr(__import__(__name__), "SCRIPTS", scripts)
    found = workflow_imports()
    assert {"affalign.config.plan", "affalign.io.jobs"} <= found["workflow/rules/x.smk"]
    with pytest.raises(AssertionError, match=r"x\.smk: affalign\.config\.plan") as failure:
        test_the_workflow_imports_stages_only_through_their_packages()
    assert "x.py: affalign.align.stage" in str(failure.value)
    assert "affalign.io\n" not in str(failure.value) + "\n"


def test_the_import_graph_has_no_cycles():
    graph = import_graph()
    state: dict[str, int] = {}
    cycles: list[list[str]] = []

    def visit(node: str, trail: list[str]) -> None:
        state[node] = 1
        for target in sorted(graph[node]):
            if state.get(target) == 1:
                cycles.append([*trail[trail.index(target) :], target] if target in trail else [node, target])
            elif target not in state:
                visit(target, [*trail, target])
        state[node] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    assert cycles == [], "import cycles:\n" + "\n".join(" -> ".join(c) for c in cycles)


def test_the_cycle_check_finds_a_cycle(tmp_path, monkeypatch):
    # The checker itself must be able to fail: two modules that import each other.
    package = tmp_path / "affalign"
    (package / "a").mkdir(parents=True)
    (package / "__init__.py").write_text('"""x"""')
    (package / "a" / "__init__.py").write_text('"""x"""')
    (package / "a" / "one.py").write_text("from affalign.a.two import f\n")
    (package / "a" / "two.py").write_text("from affalign.a.one import g\n")
    monkeypatch.setattr(__import__(__name__), "PACKAGE", package)
    graph = import_graph()
    assert "affalign.a.two" in graph["affalign.a.one"] and "affalign.a.one" in graph["affalign.a.two"]
    with pytest.raises(AssertionError, match="import cycles"):
        test_the_import_graph_has_no_cycles()


def test_results_trees_compare_equal_within_tolerance_and_name_what_differs(tmp_path):
    import polars as pl

    from affalign.io import write_csv, write_table
    from affalign.io.compare import compare_trees

    old, new = tmp_path / "old", tmp_path / "new"
    frame = pl.DataFrame({"model": ["m", "n"], "alignment": [0.5, None]})
    write_table(frame, old / "affect" / "a.parquet", {"stage": "x", "shard_wall_s": 1.0})
    write_table(frame, new / "classify" / "a.parquet", {"stage": "x", "shard_wall_s": 2.0})
    write_csv(frame, old / "t.csv")
    write_csv(frame.with_columns(pl.col("alignment") + 1e-15), new / "t.csv")
    assert compare_trees(old, new, renames={"affect/": "classify/"}) == (2, [])
    write_csv(frame.with_columns(pl.col("alignment") + 1e-6), new / "t.csv")
    write_table(frame, new / "classify" / "a.parquet", {"stage": "y"})
    compared, problems = compare_trees(old, new, renames={"affect/": "classify/"})
    assert compared == 2
    assert problems == [
        "classify/a.parquet: provenance 'stage': 'x' != 'y'",
        "t.csv: column 'alignment' row 1: '0.5' != '0.500001'",
    ]


def test_two_clean_runs_compare_equal_and_the_command_says_what_it_ignored(tmp_path):
    """What differs between two clean runs of one config (times, pids, the serving host, also
    inside an affect table's input_provenance, and the job account) is no difference."""
    import subprocess
    import sys

    import polars as pl

    from affalign.io import write_csv, write_table

    def run_tree(root: Path, run: int) -> None:
        shard = {
            "model_source": "org/m", "seed": 7, "began_at": 1700000000.5 + run,
            "ended_at": 1700000009.0 + run, "server_pid": 4000 + run,
            "server_started_at": 1699999990.0 + run, "server_host": f"gpu{run}",
        }  # fmt: skip
        frame = pl.DataFrame({"text": ["a", "b"]})
        write_table(frame, root / "generated" / "m" / "shard.parquet", shard)
        write_table(
            frame, root / "classify" / "c" / "shard.parquet", {"classifier": "c", "input_provenance": shard}
        )
        account = pl.DataFrame({"model": ["m"], "load_s": [30.0 + run], "pid": [4000 + run]})
        write_table(account, root / "services" / "job_account.parquet", {"stage": "account"})
        write_csv(account, root / "services" / "job_account.csv")

    old, new = tmp_path / "old", tmp_path / "new"
    run_tree(old, 1)
    run_tree(new, 2)
    command = [sys.executable, "-m", "affalign.io.compare", str(old), str(new)]
    equal = subprocess.run(command, capture_output=True, text=True, check=False)
    assert equal.returncode == 0, equal.stdout
    assert equal.stdout.splitlines()[-1] == "2 tables compared, 0 differences"
    assert "ignored: provenance keys" in equal.stdout and "server_pid" in equal.stdout
    assert "services/job_account.parquet" in equal.stdout
    both = subprocess.run([*command, "--compare-job-account"], capture_output=True, text=True, check=False)
    assert both.returncode == 1 and "services/job_account.csv: column 'load_s'" in both.stdout, both.stdout
    # What determines content still counts, at any depth.
    write_table(pl.DataFrame({"text": ["a", "b"]}), new / "classify" / "c" / "shard.parquet",
                {"classifier": "c", "input_provenance": {"seed": 8}})  # fmt: skip
    changed = subprocess.run(command, capture_output=True, text=True, check=False)
    assert changed.returncode == 1 and "provenance 'input_provenance'" in changed.stdout, changed.stdout
