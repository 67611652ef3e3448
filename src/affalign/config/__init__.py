"""Checks of a study's config beyond its schema, run by ``workflow/rules/common.smk``
before any job starts: paths exist, tables have the columns the config names, prompt
templates parse, survey tables are well formed. Reads the config and the files it names;
writes nothing.
"""

from affalign.config.checks import ConfigError, check_config

__all__ = ["ConfigError", "check_config"]
