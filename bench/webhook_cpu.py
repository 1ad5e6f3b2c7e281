"""Where a webhook's CPU goes: Python (Django's WSGI handler called in-process, one thread, no
HTTP server) and the PostgreSQL backend (its CPU read from /proc), per request, for the Meta
webhook and the floor (HMAC + one INSERT); then the webhook's one statement taken apart and run
on its own (conversation upsert, message insert, without the buffer-job check, without NOTIFY).
Each part is a server-side prepared statement in autocommit, like the webhook's.

Usage: .venv/bin/python bench/webhook_cpu.py [requests]   (Linux: reads /proc/<pid>/stat)
Writes bench/results/webhook_cpu.json.
"""

from __future__ import annotations

import io
import json
import os
import re
import sys
import time
import uuid
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

    import messaging.upserts as upserts

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

    # The webhook's statement as it was last run, then its parts on their own.
    captured = {}
    original = upserts._execute_prepared

    def capture(sql, params):
        captured.update(sql=sql, params=list(params))
        return original(sql, params)

    upserts._execute_prepared = capture
    list(app(environ(wi.webhook_request()), lambda status, headers: None))
    upserts._execute_prepared = original
    sql, params = captured["sql"], captured["params"]
    message_id_at = next(i for i, p in enumerate(params) if isinstance(p, str) and p.startswith("wamid."))
    conv_end, msg_start = sql.index("), msg AS ("), sql.index("), msg AS (") + len("), msg AS (")
    msg_end = sql.index(") SELECT conv.id")
    conv_sql, msg_sql = sql[len("WITH conv AS ("):conv_end], sql[msg_start:msg_end]
    n_conv, n_msg = conv_sql.count("%s"), msg_sql.count("%s")
    select = sql[msg_end + 2:]
    no_job = sql[:msg_end + 2] + re.sub(r"CASE WHEN m\.id IS NOT NULL AND %s::boolean.*?END, ", "", select,
                                        flags=re.S)
    no_notify = re.sub(r"CASE WHEN m\.id IS NOT NULL THEN pg_notify\(.*\) END ", "NULL ", sql, flags=re.S)
    with connection.cursor() as cursor:
        cursor.execute("SELECT id FROM messaging_chatconversation ORDER BY id LIMIT 1")
        conversation_id = cursor.fetchone()[0]
    raw = connection.connection
    raw.autocommit = True

    def statement(query, query_params, fresh_at=None) -> float:
        query_params = list(query_params)

        def once():
            if fresh_at is not None:
                query_params[fresh_at] = f"wamid.{uuid.uuid4().hex}"
            with raw.cursor() as cursor:
                cursor.execute(query, query_params, prepare=True)

        for _ in range(200):
            once()
        before = backend_cpu()
        for _ in range(COUNT):
            once()
        return round((backend_cpu() - before) / COUNT * 1000, 3)

    parts = {
        "the webhook's statement": statement(sql, params, message_id_at),
        "without NOTIFY": statement(no_notify, params, message_id_at),
        "without the buffer-job check": statement(no_job, params[:n_conv + n_msg], message_id_at),
        "conversation upsert alone": statement(conv_sql, params[:n_conv]),
        "message insert alone": statement(msg_sql.replace("(SELECT id FROM conv)", str(conversation_id)),
                                          params[n_conv:n_conv + n_msg], message_id_at - n_conv),
        "floor INSERT": statement("INSERT INTO bench_floor (body) VALUES (%s)", ["x" * 400]),
        "SELECT 1": statement("SELECT %s::int", [1]),
    }
    results["postgresql_ms_per_statement"] = parts
    for name, ms in parts.items():
        print(f"{name:32} PostgreSQL {ms} ms", flush=True)
    out = ROOT / "bench" / "results" / "webhook_cpu.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    sys.exit(main())
