"""Config files read strictly (keys given twice, syntax errors with their line), schema errors
in one line, and model folders that hold a model; the package functions directly (the same
through Snakemake is in test_config_errors.py)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import SCHEMA, demo_config, stand_in_model, validated_config
from snakemake.utils import validate

from affalign.config import ConfigError, check_config, read_config_file, schema_error_summary
from affalign.config.checks import model_folder_problem


def write(tmp_path: Path, text: str, name: str = "study.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_a_well_formed_file_reads_as_yaml_does(tmp_path):
    text = "seed: 3\nmodels:\n  a: {path: x, kind: base}\nlist:\n  - {k: 1}\n  - {k: 2}\n"
    assert read_config_file(write(tmp_path, text)) == {
        "seed": 3,
        "models": {"a": {"path": "x", "kind": "base"}},
        "list": [{"k": 1}, {"k": 2}],
    }


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("seed: 1\nprompts: p.yaml\nseed: 5\n", "key 'seed' is given twice, on line 1 and line 3"),
        (
            "models:\n  a:\n    path: x\n    kind: base\n    path: y\n",
            "key 'models.a.path' is given twice, on line 3 and line 5",
        ),
        ("items:\n  - {k: 1, k: 2}\n", "key 'items.[0].k' is given twice, on line 2 and line 2"),
        ("a: {b: 1}\nc: 2\na: {b: 1}\n", "key 'a' is given twice, on line 1 and line 3"),
    ],
)
def test_a_key_given_twice_is_named_with_both_lines(tmp_path, text, message):
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as error:
        read_config_file(path)
    assert str(error.value).startswith(f"{path}: {message}; YAML would keep only the last value")


def test_merge_keys_may_override_what_they_bring(tmp_path):
    text = "base: &engine {dtype: auto, tensor_parallel_size: 1}\nengine:\n  <<: *engine\n  dtype: float32\n"
    assert read_config_file(write(tmp_path, text))["engine"] == {
        "dtype": "float32",
        "tensor_parallel_size": 1,
    }


@pytest.mark.parametrize(
    ("text", "where"),
    [
        ("seed: 1\nmodels:\n  a: [1, 2\nissues: {}\n", "line 4, column 7: expected ',' or ']', but got ':'"),
        ("seed: 1\n\tprompts: x\n", "line 2, column 1: found character '\\t' that cannot start any token"),
        ("seed: 1\n models: x\n", "line 2, column 8: mapping values are not allowed here"),
    ],
)
def test_a_syntax_error_names_file_and_line(tmp_path, text, where):
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as error:
        read_config_file(path)
    assert str(error.value).startswith(f"{path}: not valid YAML: {where}"), error.value


def test_json_configs_are_read_and_checked_for_repeated_keys(tmp_path):
    path = write(tmp_path, '{"seed": 1,\t"prompts": "p.yaml"}', "study.json")
    assert read_config_file(path) == {"seed": 1, "prompts": "p.yaml"}
    path = write(tmp_path, '{"seed": 1,\t"seed": 2}', "twice.json")
    with pytest.raises(ConfigError, match=r"twice\.json: key 'seed' is given twice"):
        read_config_file(path)


def test_the_module_names_the_line_and_exits_1(tmp_path):
    good = write(tmp_path, "seed: 1\n", "good.yaml")
    bad = write(tmp_path, "seed: 1\nseed: 2\n", "bad.yaml")
    checked = subprocess.run(
        [sys.executable, "-m", "affalign.config", str(good), str(bad)], capture_output=True, text=True
    )
    assert checked.returncode == 1
    # It says plainly that it checks syntax only, and what checks the rest.
    assert checked.stdout.startswith(f"{good}: YAML syntax fine, no key given twice (syntax only: ")
    assert f"affalign check --configfile {good}" in checked.stdout
    assert checked.stderr.startswith(f"{bad}: key 'seed' is given twice, on line 1 and line 2")


def schema_summary(change) -> str:
    config = demo_config()
    change(config)
    with pytest.raises(Exception) as error:
        validate(config, str(SCHEMA), set_default=True)
    return schema_error_summary(error.value)


@pytest.mark.parametrize(
    ("change", "summary"),
    [
        (lambda c: c.pop("seed"), "top level: 'seed' is a required property"),
        (
            lambda c: c.update(sed=1),
            "top level: Additional properties are not allowed ('sed' was unexpected)",
        ),
        (
            lambda c: c["models"]["smollm2-135m-instruct"].update(hub_id="org/model"),
            "models.smollm2-135m-instruct: set exactly one of ['path', 'hub_id'",
        ),
        (
            lambda c: c["human"]["covid-19"]["columns"].update(text=[]),
            "human.covid-19.columns.text: [] is not of type 'string'; or [] should be non-empty",
        ),
        (
            lambda c: c["classifiers"].update(e={"type": "hf", "model": "x"}),
            "classifiers.e: 'labels' is a required",
        ),
        (
            lambda c: c["models"]["smollm2-135m-instruct"]["engine"].update(dtype="fp8"),
            "models.smollm2-135m-instruct.engine.dtype: 'fp8' is not one of ['auto', 'float32'",
        ),
    ],
)
def test_schema_errors_in_one_line_with_where_and_what(change, summary):
    line = schema_summary(change)
    assert line.startswith(summary), line
    assert "\n" not in line and len(line) < 200 and "$defs" not in line


def test_snakemakes_own_error_is_summarised_from_the_validation_error_it_wraps():
    """snakemake.utils.validate raises a WorkflowError whose text holds the whole schema; the
    summary comes from the ValidationError it was raised while handling."""
    config = demo_config()
    config.pop("seed")
    with pytest.raises(Exception) as error:
        validate(config, str(SCHEMA), set_default=True)
    assert "$defs" in str(error.value)  # Snakemake's own text: the whole schema
    assert schema_error_summary(error.value) == "top level: 'seed' is a required property"
    assert schema_error_summary(ValueError("plain\n  text")) == "plain text"


# --- model folders ---


def test_a_model_folder_needs_config_json_and_weights(tmp_path):
    folder = stand_in_model(tmp_path / "model")
    assert model_folder_problem(folder) is None
    assert model_folder_problem(folder / "config.json") == "is a file, not a model folder"
    (folder / "model.safetensors").rename(folder / "model-00001-of-00002.safetensors")
    assert model_folder_problem(folder) is None
    (folder / "model-00001-of-00002.safetensors").unlink()
    (folder / "tokenizer.json").write_text("{}")
    assert model_folder_problem(folder) == "has no weights files (*.safetensors, *.bin, *.pt, *.pth, *.gguf)"
    (folder / "pytorch_model.bin").write_text("version https://git-lfs.github.com/spec/v1\noid sha256:ab\n")
    assert model_folder_problem(folder).startswith(
        "holds a Git LFS pointer instead of weights (pytorch_model.bin): fetch the weights"
    )
    (folder / "config.json").unlink()
    assert model_folder_problem(folder) == "has no config.json"


@pytest.mark.parametrize(
    ("folder", "prepare_hint"),
    [("resources/models/SmolLM2-135M-Instruct", True), ("resources/models/Llama-3.1-8B", False)],
)
def test_only_the_demo_model_folder_is_said_to_come_from_make_prepare_model(tmp_path, folder, prepare_hint):
    config = demo_config()
    name = next(iter(config["models"]))
    config["models"] = {name: {**config["models"][name], "path": folder}}
    with pytest.raises(ConfigError) as error:
        check_config(validated_config(config), "study.yaml", workdir=tmp_path)
    message = str(error.value)
    assert message.startswith(f"study.yaml: models.{name}.path '{folder}' does not exist"), message
    assert ("make prepare-model" in message) is prepare_hint
    assert ("hf download ORG/NAME --local-dir FOLDER" in message) is not prepare_hint


def test_a_local_classifier_folder_is_checked_like_a_model(tmp_path):
    config = demo_config()
    for model in config["models"].values():
        model["path"] = str(stand_in_model(tmp_path / "model"))
    folder = tmp_path / "classifier"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"id2label": {"0": "joy"}}))
    config["classifiers"]["emotions"] = {"type": "hf", "model": str(folder), "labels": ["joy"]}
    with pytest.raises(ConfigError) as error:
        check_config(validated_config(config), "study.yaml")
    assert str(error.value).startswith(
        f"study.yaml: classifiers.emotions.model '{folder}' has no weights files"
    )
    assert "make prepare-model" not in str(error.value)
    (folder / "model.safetensors").write_bytes(b"weights")
    check_config(validated_config(config), "study.yaml")
