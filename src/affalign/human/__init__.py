"""The human stage: user-supplied posts into one normalised table per issue.

Reads the table named by ``human.<issue>`` in the config (CSV, parquet, JSON lines), and
for ``group_from: domains`` the domain-bias table of the ``ideology`` section; writes
``results/human/{issue}/posts.parquet`` (post_id, issue, topic, group, text) with
``dropped.csv``, ``users.csv``, ``quality.csv`` and ``quality.md``. Rule ``ingest_human``
(``workflow/rules/human.smk``) drives :func:`~affalign.human.ingest.run_ingest`.

* :mod:`~affalign.human.source` — how a table maps onto posts: columns, URLs, group and
  topic values, and the checks the config check runs too;
* :mod:`~affalign.human.ingest` — groups, topics, rows left out, the normalised table;
* :mod:`~affalign.human.quality` — posts per topic × group, excluded topics, ``quality.md``;
* :mod:`~affalign.human.ideology` — a user's ideology from the news domains shared;
* :mod:`~affalign.human.topics` — topics from keyword lists.
"""

from affalign.human.ideology import (
    DomainTableError,
    IdeologySettings,
    domain_table_options,
    read_domain_table,
)
from affalign.human.ingest import IngestParams, StudyDesign, run_ingest
from affalign.human.source import SourceSpec, check_has_rows, check_source

__all__ = [
    "DomainTableError",
    "IdeologySettings",
    "IngestParams",
    "SourceSpec",
    "StudyDesign",
    "check_has_rows",
    "check_source",
    "domain_table_options",
    "read_domain_table",
    "run_ingest",
]
