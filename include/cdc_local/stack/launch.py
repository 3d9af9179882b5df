"""Exec a program with the environment stored in a JSON file.

Supervisor's own ``environment=`` syntax cannot carry JSON values (connection
URIs) safely, so programs that need a rich environment start through this.
Airflow settings inherited from whoever started the stack are dropped: the JSON
file (derived from .stack/env) is their only source.
Usage: python launch.py ENV_JSON -- PROGRAM [ARGS...]
"""
import json
import os
import sys


def main(argv: list[str]) -> None:
    if len(argv) < 4 or argv[2] != "--":
        raise SystemExit(__doc__)
    with open(argv[1]) as fh:
        env = json.load(fh)
    inherited = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
    os.execvpe(argv[3], argv[3:], {**inherited, **env})


if __name__ == "__main__":
    main(sys.argv)
