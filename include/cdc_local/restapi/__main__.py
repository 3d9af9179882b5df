"""Serve the REST microservice: ``python -m cdc_local.restapi --db PATH [--host H] [--port P]``.

The bearer tokens come from the environment (API_TOKEN for deliveries and reads,
API_ADMIN_TOKEN for fault injection), never from the command line.
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cdc_local.restapi", description=__doc__)
    parser.add_argument("--host", default=os.environ.get("API_HOST", "127.0.0.1"))
    parser.add_argument("--port", type=int, default=int(os.environ.get("API_PORT", "8090")))
    parser.add_argument("--db", type=Path, default=os.environ.get("API_DB"),
                        help="SQLite file holding the received events (env API_DB)")
    args = parser.parse_args(argv)
    token, admin_token = os.environ.get("API_TOKEN", ""), os.environ.get("API_ADMIN_TOKEN", "")
    if not token or not admin_token:
        print("error: API_TOKEN and API_ADMIN_TOKEN must be set; the service refuses to run without "
              "authentication", file=sys.stderr)
        return 2
    if args.db is None:
        print("error: --db (or API_DB) is required", file=sys.stderr)
        return 2

    import uvicorn

    from cdc_local.restapi.app import create_app

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    uvicorn.run(create_app(Path(args.db), token, admin_token), host=args.host, port=args.port, log_level="info")
    return 0


if __name__ == "__main__":
    sys.exit(main())
