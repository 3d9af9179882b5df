"""A small webhook receiver for platform alerts, run by the local stack.

It stands in for whatever a team wires alerts to (Slack, PagerDuty, Opsgenie): it
accepts the same JSON POSTs, appends them to a JSON-lines file, and lists them, so
alerts are visible (`curl $ALERTS_URL`) and testable.

    python -m cdc_local.alerts_receiver --host 127.0.0.1 --port 8091 --store alerts.jsonl
"""
from __future__ import annotations

import argparse
import json
import threading
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlparse

MAX_BODY = 1 << 20


class AlertStore:
    def __init__(self, path: Path):
        self.path = path
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()

    def append(self, alert: dict) -> dict:
        record = {"received_at": datetime.now(timezone.utc).isoformat(), **alert}
        with self._lock, self.path.open("a") as fh:
            fh.write(json.dumps(record, sort_keys=True) + "\n")
        return record

    def list(self, source: str | None = None, since: str | None = None) -> list[dict]:
        if not self.path.exists():
            return []
        with self._lock:
            records = [json.loads(line) for line in self.path.read_text().splitlines() if line.strip()]
        if source:
            records = [r for r in records if r.get("source") == source]
        if since:
            records = [r for r in records if r["received_at"] > since]
        return records


def make_handler(store: AlertStore):
    class Handler(BaseHTTPRequestHandler):
        def _send(self, status: int, body) -> None:
            payload = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            url = urlparse(self.path)
            if url.path == "/health":
                return self._send(200, {"status": "ok"})
            if url.path == "/alerts":
                query = parse_qs(url.query)
                return self._send(200, store.list(query.get("source", [None])[0], query.get("since", [None])[0]))
            return self._send(404, {"error": "not found"})

        def do_POST(self) -> None:  # noqa: N802
            if urlparse(self.path).path != "/alerts":
                return self._send(404, {"error": "not found"})
            length = int(self.headers.get("Content-Length") or 0)
            if length <= 0 or length > MAX_BODY:
                return self._send(400, {"error": f"body must be 1..{MAX_BODY} bytes of JSON"})
            try:
                alert = json.loads(self.rfile.read(length))
            except json.JSONDecodeError as exc:
                return self._send(400, {"error": f"invalid JSON: {exc}"})
            if not isinstance(alert, dict) or not alert.get("title"):
                return self._send(422, {"error": "an alert is a JSON object with at least a 'title'"})
            return self._send(201, store.append(alert))

        def log_message(self, fmt: str, *args) -> None:
            print(f"{self.address_string()} {fmt % args}", flush=True)

    return Handler


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8091)
    parser.add_argument("--store", type=Path, required=True)
    args = parser.parse_args(argv)
    server = ThreadingHTTPServer((args.host, args.port), make_handler(AlertStore(args.store)))
    print(f"alert receiver on http://{args.host}:{args.port}/alerts, storing to {args.store}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
