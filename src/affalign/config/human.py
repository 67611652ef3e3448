"""What the ingestion of one issue's human posts depends on (rule ``ingest_human``), from
the config: each function gives one of the rule's params, so that a change reruns the
ingestion of exactly the issues it concerns (keywords only where topics come from keywords,
the ideology section only where groups come from shared domains).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def human_source(config: Mapping[str, Any], issue: str) -> dict[str, Any]:
    """How the issue's table maps onto posts: columns, where groups and topics come from,
    which URL fields to read (``human.<issue>`` without its path, which is the input)."""
    source = config["human"][issue]
    return {
        "columns": dict(source["columns"]),
        "group_from": source["group_from"],
        "topic_from": source["topic_from"],
        "url_fields": list(source["url_fields"]),
        "drop_unknown_groups": source["drop_unknown_groups"],
    }


def human_inputs(config: Mapping[str, Any], issue: str) -> dict[str, str]:
    """The issue's table and, when groups come from shared domains, the domain-bias table."""
    inputs = {"table": config["human"][issue]["path"]}
    if config["human"][issue]["group_from"] == "domains":
        inputs["domains"] = config["ideology"]["domain_table"]
    return inputs


def issue_keywords(config: Mapping[str, Any], issue: str) -> dict[str, list[str]]:
    """Topic -> keywords when topics come from keywords; empty otherwise."""
    if config["human"][issue]["topic_from"] != "keywords":
        return {}
    return {topic: list(spec["keywords"]) for topic, spec in config["issues"][issue]["topics"].items()}


def ideology_settings(config: Mapping[str, Any], issue: str) -> dict[str, Any]:
    """The ideology section when the issue's groups come from domains; empty otherwise."""
    return dict(config["ideology"]) if config["human"][issue]["group_from"] == "domains" else {}


def topic_assignment(config: Mapping[str, Any], issue: str) -> dict[str, Any]:
    """Minimum posts per topic and group; the multiple-topic policy with keyword topics."""
    settings = config["topic_assignment"]
    chosen = {"min_posts_per_group": settings["min_posts_per_group"]}
    if config["human"][issue]["topic_from"] == "keywords":
        chosen["multiple_topics"] = settings["multiple_topics"]
    return chosen
