"""The documentation says what the code has: every ``affalign.*`` name it mentions exists,
its relative links lead to files, and the key table of ``config/README.md`` is the one the
config schema gives."""

from __future__ import annotations

import importlib
import importlib.util
import re
from pathlib import Path

import pytest
from conftest import REPO

from affalign.config import schema_docs

DOCS = sorted(
    {
        REPO / "README.md",
        REPO / "ARCHITECTURE.md",
        REPO / "CHANGELOG.md",
        REPO / "config" / "README.md",
        *(REPO / "docs").glob("*.md"),
    }
)
# A dotted name: `affalign.io.read_provenance`; placeholders such as affalign.<stage>.job
# stop at the `<` and name no module.
NAME = re.compile(r"\baffalign(?:\.[A-Za-z_][A-Za-z0-9_]*)+")
LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")


def mentioned_names() -> dict[str, list[str]]:
    """Every dotted name, with the documents that mention it."""
    names: dict[str, list[str]] = {}
    for path in DOCS:
        for name in NAME.findall(path.read_text(encoding="utf-8")):
            where = names.setdefault(name, [])
            if str(path.relative_to(REPO)) not in where:
                where.append(str(path.relative_to(REPO)))
    return dict(sorted(names.items()))


def resolves(name: str) -> bool:
    """An importable module, or an attribute (at any depth) of the longest module prefix."""
    parts = name.split(".")
    for cut in range(len(parts), 0, -1):
        module = ".".join(parts[:cut])
        try:
            found = importlib.util.find_spec(module) is not None
        except ModuleNotFoundError:
            found = False
        if not found:
            continue
        if cut == len(parts):
            return True
        target = importlib.import_module(module)
        for attribute in parts[cut:]:
            if not hasattr(target, attribute):
                return False
            target = getattr(target, attribute)
        return True
    return False


def test_documents_exist() -> None:
    assert all(path.is_file() for path in DOCS)
    assert (REPO / "docs" / "design.md") in DOCS


def test_the_readme_names_the_test_command() -> None:
    # .ci/run runs `make test`; the front door must say that this is the test command.
    lines = (REPO / "README.md").read_text(encoding="utf-8").splitlines()
    assert any(line.startswith("make test   # ") for line in lines)


@pytest.mark.parametrize("name", sorted(mentioned_names()))
def test_mentioned_names_exist(name: str) -> None:
    documents = mentioned_names()[name]
    assert resolves(name), (
        f"{name}, mentioned in {', '.join(documents)}, is neither a module nor an attribute of one"
    )


def test_the_name_check_catches_a_missing_name() -> None:
    assert resolves("affalign.io.read_provenance")
    assert not resolves("affalign.shards.read_provenance")
    assert not resolves("affalign.opinions.survey.survey_warnings")


@pytest.mark.parametrize("path", DOCS, ids=lambda path: str(path.relative_to(REPO)))
def test_relative_links_lead_to_files(path: Path) -> None:
    broken = [
        target
        for target in LINK.findall(path.read_text(encoding="utf-8"))
        if "://" not in target and not target.startswith("mailto:") and not (path.parent / target).exists()
    ]
    assert not broken, f"{path.relative_to(REPO)}: links to missing files: {broken}"


def test_the_key_table_is_the_schemas() -> None:
    readme = schema_docs.README.read_text(encoding="utf-8")
    assert schema_docs.render(readme, schema_docs.table()) == readme, (
        "config/README.md's key table differs from workflow/schemas/config.schema.yaml: run `make docs`"
    )


def test_every_key_of_the_table_says_what_it_means() -> None:
    rows = schema_docs.rows(schema_docs.load_schema())
    assert [row.key for row in rows if not row.meaning] == []
    keys = {row.key for row in rows}
    for key in (
        "seed",
        "models.<slug>.engine.dtype",
        "human.<issue>.columns.text",
        "opinions.surveys.<slug>.form",
    ):
        assert key in keys


def test_the_table_marks_branch_keys_and_conditional_defaults() -> None:
    text = schema_docs.table()
    assert "| `classifiers.<slug>.threshold` (`hf`, `hf-binary-set`) | `0.5` |" in text
    assert "| `classifiers.<slug>.model` (`llm`) | required |" in text
    assert "| `ideology.domain_columns.score` | `score` (when no `category` is given) |" in text
    # A default per value of another key (if/then/else): both, each with its condition.
    assert (
        "| `classifiers.<slug>.prompt` (`llm`) | `resources/classifier_prompts/yes-no.txt` (when `method` is "
        "`logprobs`); `resources/classifier_prompts/labels.txt` (otherwise) |"
    ) in text
    # A pipe inside a description would end its cell.
    assert '"a100\\|h100"' in text


def test_check_mode_fails_on_a_stale_table(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    readme = tmp_path / "README.md"
    stale = f"prose\n{schema_docs.BEGIN}\n| key | default | meaning |\n{schema_docs.END}\nmore prose\n"
    readme.write_text(stale, encoding="utf-8")
    assert schema_docs.main(["--check", "--readme", str(readme)]) == 1
    assert "make docs" in capsys.readouterr().err
    assert readme.read_text(encoding="utf-8") == stale
    assert schema_docs.main(["--readme", str(readme)]) == 0
    rewritten = readme.read_text(encoding="utf-8")
    assert rewritten.startswith("prose\n") and rewritten.endswith(f"{schema_docs.END}\nmore prose\n")
    assert schema_docs.main(["--check", "--readme", str(readme)]) == 0
