"""The main job (`make demo`): show the running platform end to end.

Run after `make up`; reads connection details from .stack/env.
"""
from __future__ import annotations

import sys

from cdc_platform.smoke import run_checks
from cdc_platform.stack import envfile
from cdc_platform.stack.config import StackConfig


def main() -> int:
    cfg = StackConfig.load()
    env = envfile.read(cfg.env_file)
    if not env:
        print(f"error: {cfg.env_file} missing; run `make up` first", file=sys.stderr)
        return 2
    print("==> smoke check: one real round trip per service")
    results = run_checks(env)
    for r in results:
        print(f"    {'ok ' if r.ok else 'FAIL'} {r.service:<14} {r.detail} ({r.seconds:.1f}s)")
    print()
    print(f"Airflow UI: {env['AIRFLOW_URL']}  login: {env['AIRFLOW_USER']} / {env['AIRFLOW_PASSWORD']}")
    print(f"Connection details for scripts: . {cfg.env_file}    Stop everything: make down")
    return 0 if all(r.ok for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
