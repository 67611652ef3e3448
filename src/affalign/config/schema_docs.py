"""The key table of ``config/README.md``, generated from the config schema.

``workflow/schemas/config.schema.yaml`` is the one place defaults are written, and its
``description`` fields say what each key means; this module turns them into the Markdown
table between the marker comments of ``config/README.md``, so that the two cannot drift
apart. The prose around the table stays hand-written.

``python -m affalign.config.schema_docs`` rewrites the table (``make docs``);
``--check`` exits 1, naming the file, when the table differs from what the schema gives.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from affalign.config.files import SCHEMA

README = SCHEMA.parents[2] / "config" / "README.md"
# The table between these lines is rewritten whole; the text says so to whoever edits it.
BEGIN = "<!-- config-keys:begin: generated from the config schema by `make docs`; edit the schema -->"
END = "<!-- config-keys:end -->"
# Maps keyed by a name the config chooses are written with a placeholder; a map of human
# tables is keyed by issue, every other such map by a slug of its own.
PLACEHOLDERS = {"human": "<issue>"}


@dataclass(frozen=True)
class Row:
    key: str
    default: str
    meaning: str
    # The classifier types a key belongs to, for keys of one type's branch.
    kinds: tuple[str, ...] = ()


def load_schema(path: Path = SCHEMA) -> dict[str, Any]:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def rows(schema: Mapping[str, Any]) -> list[Row]:
    """One row per documented key, in the schema's order."""
    return list(_walk(schema, schema, ""))


def _resolve(root: Mapping[str, Any], node: Mapping[str, Any]) -> dict[str, Any]:
    """``node`` with a local ``$ref`` merged in: the node's own keywords win, and its
    properties are added to the target's (a ``$ref`` beside ``properties`` applies both)."""
    node = dict(node)
    while "$ref" in node:
        ref = node.pop("$ref")
        target: Any = root
        for part in ref.removeprefix("#/").split("/"):
            target = target[part]
        merged = {**target, **node}
        if "properties" in target and "properties" in node:
            merged["properties"] = {**target["properties"], **node["properties"]}
        node = merged
    return node


def _walk(root: Mapping[str, Any], node: Mapping[str, Any], prefix: str) -> Iterator[Row]:
    node = _resolve(root, node)
    required = set(node.get("required", ()))
    conditional = _conditional_defaults(node)
    for name, child in node.get("properties", {}).items():
        child = _resolve(root, child)
        if "const" in child:
            continue  # the discriminator of a branch (classifiers' `type`), documented above it
        key = f"{prefix}{name}"
        yield from _row(key, child, name in required, conditional.get(name))
        yield from _descend(root, child, key)
    yield from _branches(root, node, prefix)


def _descend(root: Mapping[str, Any], node: Mapping[str, Any], key: str) -> Iterator[Row]:
    if "properties" in node or "allOf" in node:
        yield from _walk(root, node, f"{key}.")
    values = node.get("additionalProperties")
    if isinstance(values, Mapping) and "$ref" in values:
        target = _resolve(root, values)
        if target.get("type") == "object":
            placeholder = PLACEHOLDERS.get(key, "<slug>")
            yield from _walk(root, target, f"{key}.{placeholder}.")


def _branches(root: Mapping[str, Any], node: Mapping[str, Any], prefix: str) -> Iterator[Row]:
    """Keys of ``allOf: [{if: {type: X}, then: ...}]`` branches, marked with the types they
    belong to; a key that several branches describe alike is one row."""
    found: dict[Row, list[str]] = {}
    for branch in node.get("allOf", ()):
        kind = branch.get("if", {}).get("properties", {}).get("type", {}).get("const")
        if kind is None or "then" not in branch:
            continue
        for row in _walk(root, branch["then"], prefix):
            found.setdefault(row, []).append(kind)
    for row, kinds in found.items():
        yield Row(row.key, row.default, row.meaning, tuple(kinds))


def _conditional_defaults(node: Mapping[str, Any]) -> dict[str, str]:
    """Defaults that a property gets only under an ``if``/``then`` (or its ``else``) of its
    object."""
    then = node.get("then", {}).get("properties", {})
    otherwise = node.get("else", {}).get("properties", {})
    condition = _condition(node.get("if", {}))
    found: dict[str, list[str]] = {}
    for name, child in then.items():
        if "default" in child:
            found.setdefault(name, []).append(f"{_value(child['default'])} (when {condition})")
    for name, child in otherwise.items():
        if "default" in child:
            found.setdefault(name, []).append(f"{_value(child['default'])} (otherwise)")
    return {name: "; ".join(texts) for name, texts in found.items()}


def _condition(condition: Mapping[str, Any]) -> str:
    missing = condition.get("not", {}).get("required")
    if missing:
        return "no " + ", ".join(f"`{name}`" for name in missing) + " is given"
    constants = {
        name: child["const"] for name, child in condition.get("properties", {}).items() if "const" in child
    }
    if constants:
        return " and ".join(f"`{name}` is {_value(value)}" for name, value in constants.items())
    return "its condition holds"


def _row(key: str, node: Mapping[str, Any], required: bool, conditional: str | None) -> Iterator[Row]:
    description = node.get("description")
    values = node.get("additionalProperties")
    is_object = "properties" in node or (isinstance(values, Mapping) and "$ref" in values)
    if description is None and is_object:
        return  # a container without a meaning of its own: its keys carry it
    if required:
        default = "required"
    elif conditional is not None:
        default = conditional
    elif "default" in node and not (is_object and node["default"] == {}):
        default = _value(node["default"])
    else:
        default = ""
    yield Row(key, default, _markdown(" ".join((description or "").split())))


def _value(value: Any) -> str:
    if isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, str):
        text = value
    elif isinstance(value, list):
        text = "[" + ", ".join(_plain(item) for item in value) + "]"
    elif isinstance(value, Mapping):
        text = json.dumps(value, ensure_ascii=False, separators=(", ", ": "))
    else:
        text = str(value)
    return f"`{text}`".replace("|", "\\|")


def _plain(value: Any) -> str:
    return _value(value).strip("`")


def _markdown(text: str) -> str:
    """``text`` for a table cell: pipes escaped, and ``<`` outside code spans written as an
    entity so that placeholders such as <issue> are shown, not taken for HTML tags."""
    parts = re.split(r"(`[^`]*`)", text.replace("|", "\\|"))
    return "".join(part if part.startswith("`") else part.replace("<", "&lt;") for part in parts)


def table(schema: Mapping[str, Any] | None = None) -> str:
    lines = ["| key | default | meaning |", "|---|---|---|"]
    for row in rows(load_schema() if schema is None else schema):
        key = f"`{row.key}`"
        if row.kinds:
            key += " (" + ", ".join(f"`{kind}`" for kind in row.kinds) + ")"
        lines.append(f"| {key} | {row.default} | {row.meaning} |")
    return "\n".join(lines) + "\n"


def render(readme: str, generated: str) -> str:
    """``readme`` with the text between the markers replaced by ``generated``."""
    begin, end = readme.find(BEGIN), readme.find(END)
    if begin < 0 or end < begin:
        raise ValueError(f"the markers {BEGIN!r} and {END!r} are missing")
    return readme[: begin + len(BEGIN)] + "\n" + generated + readme[end:]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m affalign.config.schema_docs", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--check", action="store_true", help="exit 1 when the table differs; write nothing")
    parser.add_argument("--readme", type=Path, default=README)
    args = parser.parse_args(argv)
    current = args.readme.read_text(encoding="utf-8")
    try:
        wanted = render(current, table())
    except ValueError as error:
        print(f"{args.readme}: {error}", file=sys.stderr)
        return 2
    if args.check:
        if wanted != current:
            print(f"{args.readme}: the key table differs from the schema; run `make docs`", file=sys.stderr)
            return 1
        return 0
    if wanted != current:
        args.readme.write_text(wanted, encoding="utf-8")
        print(f"{args.readme}: key table rewritten from {SCHEMA.name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
