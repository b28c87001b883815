"""A small Alertmanager webhook receiver that makes notifications visible: one log line per alert.

Alertmanager posts its notifications here (prometheus/alertmanager.yml). Each alert in them is
written to standard output as one line an operator can read or grep, with the time, whether it is
firing or resolved, its name, severity, instance, summary and runbook link; with ``--jsonl FILE``
each notification is also appended to FILE as one JSON line. ``GET /`` lists the most recent
notifications as JSON, so ``curl -s 127.0.0.1:9095/`` shows what was delivered.

It uses the standard library only, so it runs in a plain ``python`` image:

    python3 prometheus/alert_receiver.py --host 0.0.0.0 --port 9095 [--jsonl alerts.jsonl]
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
from collections import deque
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

MAX_BODY_BYTES = 1 << 20
KEPT = 100


class Notifications:
    """The most recent notifications, and where each is recorded."""

    def __init__(self, jsonl: str | None) -> None:
        self._recent: deque[dict[str, Any]] = deque(maxlen=KEPT)
        self._jsonl = jsonl
        self._lock = threading.Lock()

    def record(self, payload: dict[str, Any]) -> None:
        received = datetime.now(UTC).isoformat(timespec="seconds")
        entry = {"received_at": received, **payload}
        with self._lock:
            self._recent.append(entry)
            if self._jsonl:
                with open(self._jsonl, "a", encoding="utf-8") as handle:
                    handle.write(json.dumps(entry) + "\n")
            for alert in payload.get("alerts", []):
                print(describe(received, alert), flush=True)

    def recent(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self._recent)


def describe(received: str, alert: dict[str, Any]) -> str:
    labels = alert.get("labels", {})
    annotations = alert.get("annotations", {})
    fields = {
        "status": alert.get("status", "?"),
        "alertname": labels.get("alertname", "?"),
        "severity": labels.get("severity", ""),
        "instance": labels.get("instance", ""),
        "summary": annotations.get("summary", ""),
        "runbook": annotations.get("runbook_url", ""),
        "since": alert.get("startsAt", ""),
    }
    return received + " " + " ".join(f"{k}={json.dumps(v)}" for k, v in fields.items() if v)


def handler_for(notifications: Notifications) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "alert-receiver"
        sys_version = ""

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            if not 0 < length <= MAX_BODY_BYTES:
                self._answer(400, {"error": "a JSON body of at most 1 MiB is required"})
                return
            try:
                payload = json.loads(self.rfile.read(length))
            except ValueError:
                self._answer(400, {"error": "the body is not JSON"})
                return
            if not isinstance(payload, dict):
                self._answer(400, {"error": "the body is not an Alertmanager notification"})
                return
            notifications.record(payload)
            self._answer(200, {"status": "ok"})

        def do_GET(self) -> None:
            self._answer(200, {"notifications": notifications.recent()})

        def _answer(self, code: int, body: dict[str, Any]) -> None:
            data = json.dumps(body).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            pass  # one line per alert is the output; requests themselves are noise

    return Handler


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9095)
    parser.add_argument("--jsonl", help="also append every notification to this file, one JSON line each")
    args = parser.parse_args(argv)
    server = ThreadingHTTPServer((args.host, args.port), handler_for(Notifications(args.jsonl)))
    print(f"alert receiver listening on http://{args.host}:{server.server_address[1]}/alerts", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
