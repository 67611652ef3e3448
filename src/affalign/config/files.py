"""Reading config files strictly, and schema errors in one line.

Snakemake reads a config file with a YAML loader that keeps the last of two equal keys
without a word, and reports a syntax error without the file or the line; its schema
validation prints the whole schema. ``workflow/rules/common.smk`` reads the same files
again with :func:`read_config_file` before validating, and reports a schema error with
:func:`schema_error_summary`.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml
from jsonschema.exceptions import ValidationError, best_match

from affalign.config.checks import ConfigError

MERGE_TAG = "tag:yaml.org,2002:merge"
# Longer messages (a schema error that quotes a whole section) are cut here.
MESSAGE_CHARS = 300


def read_config_file(path: str | Path) -> Any:
    """The content of a YAML (or JSON) config file.

    Raises :class:`ConfigError` naming the file and line for a syntax error, and the key and
    both lines for a key given twice in one mapping (merge keys, ``<<``, may override).
    """
    text = Path(path).read_text(encoding="utf-8")
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as error:
        if _is_json(text):
            return json.loads(text, object_pairs_hook=_json_object(path))
        raise ConfigError(f"{path}: not valid YAML: {_describe_yaml_error(error)}") from None
    except yaml.YAMLError as error:
        raise ConfigError(f"{path}: not valid YAML: {error}") from None
    if root is not None:
        _reject_repeated_keys(root, path, ())
    return yaml.safe_load(text)


def check_config_files(paths: Iterable[str | Path]) -> None:
    """Read every config file strictly (see :func:`read_config_file`)."""
    for path in paths:
        read_config_file(path)


def _describe_yaml_error(error: yaml.MarkedYAMLError) -> str:
    mark = error.problem_mark or error.context_mark
    where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
    problem = error.problem or "cannot parse"
    context = ""
    if error.context and error.context_mark and error.context_mark is not mark:
        context = f" ({error.context} that starts on line {error.context_mark.line + 1})"
    return f"{where}{problem}{context}"


def _reject_repeated_keys(node: yaml.Node, path: str | Path, at: tuple[str, ...]) -> None:
    if isinstance(node, yaml.MappingNode):
        seen: dict[tuple[str, str], int] = {}
        for key, value in node.value:
            if key.tag == MERGE_TAG:
                _reject_repeated_keys(value, path, at)
                continue
            name = str(key.value) if isinstance(key, yaml.ScalarNode) else "<complex key>"
            line = key.start_mark.line + 1
            if isinstance(key, yaml.ScalarNode):
                identity = (key.tag, key.value)
                if identity in seen:
                    dotted = ".".join((*at, name))
                    raise ConfigError(
                        f"{path}: key {dotted!r} is given twice, on line {seen[identity]} and line {line}; "
                        "YAML would keep only the last value without a word: remove one of them"
                    )
                seen[identity] = line
            _reject_repeated_keys(value, path, (*at, name))
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            _reject_repeated_keys(item, path, (*at, f"[{index}]"))


def _is_json(text: str) -> bool:
    try:
        json.loads(text)
    except ValueError:
        return False
    return True


def _json_object(path: str | Path):
    def build(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        mapping: dict[str, Any] = {}
        for key, value in pairs:
            if key in mapping:
                raise ConfigError(
                    f"{path}: key {key!r} is given twice in one object; JSON readers keep only the last "
                    "value without a word: remove one of them"
                )
            mapping[key] = value
        return mapping

    return build


def schema_error_summary(error: BaseException) -> str:
    """One line for a failed schema validation: where in the config, and what is wrong.

    ``error`` is a :class:`jsonschema.ValidationError` or an exception that carries one
    among its arguments (Snakemake's ``WorkflowError`` from ``snakemake.utils.validate``);
    anything else is described by its own text.
    """
    found = error if isinstance(error, ValidationError) else None
    for argument in getattr(error, "args", ()):
        if found is None and isinstance(argument, ValidationError):
            found = argument
    if found is None:
        return " ".join(str(error).split())
    # oneOf / anyOf / allOf: the branch that came closest says more than "not valid under".
    while found.context:
        found = best_match(found.context)
    location = ".".join(str(part) for part in found.absolute_path) or "top level"
    message = " ".join(found.message.split())
    if len(message) > MESSAGE_CHARS:
        message = message[: MESSAGE_CHARS - 1] + "…"
    return f"{location}: {message}"
