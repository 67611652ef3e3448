"""``python -m affalign.config FILE...``: the syntax of config files only.

Snakemake reads ``--configfile`` files itself before the workflow starts, and reports a
YAML syntax error there as "Config file is not valid JSON or YAML", without the file or the
line; this names both (and keys given twice). Exit status 1 when a file has a problem. It
checks nothing else (no schema, no paths): ``affalign check --configfile FILE`` runs the
whole pre-flight of a run, and says so where a file is readable.
"""

from __future__ import annotations

import sys

from affalign.config.checks import ConfigError
from affalign.config.files import read_config_file


def main(paths: list[str]) -> int:
    if not paths:
        print("usage: python -m affalign.config CONFIG.yaml...", file=sys.stderr)
        return 2
    failed = False
    for path in paths:
        try:
            read_config_file(path)
        except (ConfigError, OSError) as error:
            print(error, file=sys.stderr)
            failed = True
        else:
            print(
                f"{path}: YAML syntax fine, no key given twice (syntax only: "
                f"affalign check --configfile {path} checks keys, paths, runtime and weights)"
            )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
