"""Where a webhook's CPU goes: Python (Django's WSGI handler called in-process, one thread, no
HTTP server) and the PostgreSQL backend (its CPU read from /proc), per request, for the Meta
webhook (signature, JSON check, the raw delivery into the inbox) and the floor (HMAC + one
INSERT); then the worker's side, per delivery: the inbox drained in-process in batches of 1, 20
and 200 (parse, route, the batch's one write: conversations, messages, buffer jobs, live events).

Usage: .venv/bin/python bench/webhook_cpu.py [requests]   (Linux: reads /proc/<pid>/stat)
Writes bench/results/webhook_cpu.json.
"""

from __future__ import annotations

import io
import json
import os
import sys
import time
from pathlib import Path

from msg_common import ROOT, reset_scratch_database

COUNT = int(sys.argv[1]) if len(sys.argv) > 1 else 3000


def main() -> int:
    import webhook_ingest as wi

    database_url = reset_scratch_database()
    os.environ["DJANGO_SETTINGS_MODULE"] = "msg_settings"  # the platform's URLs plus the floor's
    wi._seed(database_url)
    from django.core.handlers.wsgi import WSGIHandler
    from django.db import connection

    app = WSGIHandler()

    def environ(raw_request: bytes) -> dict:
        head, body = raw_request.split(b"\r\n\r\n", 1)
        lines = head.decode().split("\r\n")
        method, path, _ = lines[0].split(" ")
        env = {"REQUEST_METHOD": method, "PATH_INFO": path, "SCRIPT_NAME": "", "QUERY_STRING": "",
               "SERVER_NAME": "bench", "SERVER_PORT": "80", "wsgi.input": io.BytesIO(body),
               "CONTENT_LENGTH": str(len(body)), "wsgi.url_scheme": "http", "wsgi.errors": sys.stderr,
               "REMOTE_ADDR": "127.0.0.1"}
        for line in lines[1:]:
            name, value = line.split(": ", 1)
            key = name.upper().replace("-", "_")
            env[key if key == "CONTENT_TYPE" else f"HTTP_{key}"] = value
        return env

    def backend_cpu() -> float:
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_backend_pid()")
            pid = cursor.fetchone()[0]
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def through_django(make_request) -> dict:
        statuses = set()
        for _ in range(200):  # warm-up: imports, caches, prepared statements
            list(app(environ(make_request()), lambda status, headers: statuses.add(status)))
        requests = [environ(make_request()) for _ in range(COUNT)]
        pg, py = backend_cpu(), time.process_time()
        for env in requests:
            list(app(env, lambda status, headers: statuses.add(status)))
        pg, py = backend_cpu() - pg, time.process_time() - py
        assert statuses == {"200 OK"}, statuses
        return {"python_ms": round(py / COUNT * 1000, 3), "postgresql_ms": round(pg / COUNT * 1000, 3)}

    results = {"requests": COUNT, "through_django": {
        "floor (HMAC + 1 insert)": through_django(wi.floor_request),
        "Meta webhook": through_django(wi.webhook_request),
    }}
    for name, figures in results["through_django"].items():
        print(f"{name:28} {figures}", flush=True)

    # The worker's side: the deliveries the webhook stored, drained in batches of several sizes.
    from messaging import inbox

    inbox.drain()
    processing = {}
    pg = py = 0.0
    for _ in range(COUNT):  # quiet traffic: each delivery is its own batch, the inbox holds one row
        list(app(environ(wi.webhook_request()), lambda status, headers: None))
        pg, py = pg - backend_cpu(), py - time.process_time()
        inbox.process_pending(limit=1)
        pg, py = pg + backend_cpu(), py + time.process_time()
    processing["one at a time, as they arrive"] = {"python_ms": round(py / COUNT * 1000, 3),
                                                   "postgresql_ms": round(pg / COUNT * 1000, 3)}
    for size in (1, 20, 200):  # a backlog of COUNT deliveries drained in batches of `size`
        for _ in range(COUNT):
            list(app(environ(wi.webhook_request()), lambda status, headers: None))
        pg, py = backend_cpu(), time.process_time()
        while inbox.process_pending(limit=size):
            pass
        pg, py = backend_cpu() - pg, time.process_time() - py
        processing[f"backlog, batches of {size}"] = {"python_ms": round(py / COUNT * 1000, 3),
                                                    "postgresql_ms": round(pg / COUNT * 1000, 3)}
    for name, figures in processing.items():
        print(f"worker, {name:36} {figures}", flush=True)
    results["worker_per_delivery"] = processing
    out = ROOT / "bench" / "results" / "webhook_cpu.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    sys.exit(main())
