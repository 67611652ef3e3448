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

# The one schema of a study's config (and the one place its defaults are written).
SCHEMA = Path(__file__).resolve().parents[3] / "workflow" / "schemas" / "config.schema.yaml"
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


def validate_config(config: Any, source: str) -> None:
    """Validate ``config`` against the schema in place, filling in every default as the
    workflow does (Snakemake's own validator); raise :class:`ConfigError` with one line
    (:func:`schema_error_summary`) when it is not a valid affalign config."""
    from snakemake.exceptions import WorkflowError
    from snakemake.utils import validate

    if not isinstance(config, dict):
        raise ConfigError(f"{source}: not a valid affalign config: the top level must be a mapping of keys")
    try:
        validate(config, str(SCHEMA), set_default=True)
    except WorkflowError as error:
        raise ConfigError(f"{source}: not a valid affalign config: {schema_error_summary(error)}") from None


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

    ``error`` is a :class:`jsonschema.ValidationError` or an exception raised while handling
    one (Snakemake's ``WorkflowError`` from ``snakemake.utils.validate``, whose own text holds
    the whole schema); anything else is described by its own text.
    """
    found: BaseException | None = error
    while found is not None and not isinstance(found, ValidationError):
        found = found.__cause__ or found.__context__
    if found is None:
        return " ".join(str(error).split())
    location = ".".join(str(part) for part in found.absolute_path) or "top level"
    alternatives = _alternative_keys(found)
    if alternatives is not None:
        given = [key for key in alternatives if isinstance(found.instance, dict) and key in found.instance]
        return f"{location}: set exactly one of {alternatives} (found {given or 'none'})"
    if found.validator in ("oneOf", "anyOf") and found.context:
        # What each allowed form lacks says more than "not valid under any of the given schemas".
        branches: dict[Any, list[ValidationError]] = {}
        for child in found.context:
            branches.setdefault(child.relative_schema_path[0], []).append(child)
        closest = [best_match(errors) for errors in branches.values()]
        deepest = max(closest, key=lambda child: len(child.absolute_path))
        if len(deepest.absolute_path) > len(found.absolute_path):
            return schema_error_summary(deepest)
        message = "; or ".join(_short_message(child) for child in closest)
    else:
        message = _short_message(found)
    if len(message) > MESSAGE_CHARS:
        message = message[: MESSAGE_CHARS - 1] + "…"
    return f"{location}: {message}"


def _short_message(error: ValidationError) -> str:
    message = " ".join(error.message.split())
    # Messages open with the offending value: a long one is named, not printed.
    shown = repr(error.instance)
    if isinstance(error.instance, dict | list) and len(shown) > 60 and message.startswith(shown):
        message = ("this section" if isinstance(error.instance, dict) else "this list") + message[
            len(shown) :
        ]
    return message


def _alternative_keys(error: ValidationError) -> list[str] | None:
    """The keys of a oneOf whose every branch requires a key (``path`` or ``hub_id``), else None."""
    branches = error.validator_value if error.validator == "oneOf" else None
    if not isinstance(branches, list) or not all(isinstance(b, dict) and "required" in b for b in branches):
        return None
    return [key for branch in branches for key in branch["required"]]
