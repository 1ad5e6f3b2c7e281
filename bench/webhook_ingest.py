"""Webhook ingest: the Meta webhook (signature, JSON check, the raw delivery persisted in the
webhook inbox) against a bare Django view and the floor (signature check + one insert) on the
same server, same run, same load, with a worker running beside the server on the same machine
that drains the inbox meanwhile (parse, binding lookup, de-duplication, conversation upsert,
message insert, buffer job): its CPU is taken from the same two cores. After the load: how long
the worker took to empty the inbox, and whether every accepted delivery became one message.

Layouts: production (gunicorn WSGI, 2 processes x 8 threads) and `make up`'s single daphne.
Writes bench/results/webhook_ingest.json.
Usage: .venv/bin/python bench/webhook_ingest.py [seconds] [gunicorn|daphne] [--python-load] [--pause-worker]
The load comes from wrk when it is installed (`apt-get install wrk`; C, one thread), else from the
Python generator in msg_common, which takes most of a core and caps the server (`--python-load`
forces it, to compare).
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import psutil
import psycopg
from msg_common import ROOT, RssSampler, child_env, http_request, load, reset_scratch_database, setup_django, stop
from msg_common import load_wrk, wait_for_port, wrk_available

_args = [a for a in sys.argv[1:] if not a.startswith("--")]
SECONDS = float(_args[0]) if _args else 15
ONLY = _args[1] if len(_args) > 1 else ""
USE_WRK = "--python-load" not in sys.argv
# --pause-worker: the worker is stopped (SIGSTOP) while the webhook's load runs and drains after it,
# to tell the webhook's own figures from the cost of sharing the two cores with the worker.
PAUSE_WORKER = "--pause-worker" in sys.argv
PORT = 8765
SECRET = b"bench-app-secret"
PHONE_NUMBER_ID = "BENCH-PN"
CONTACTS = 1000


def _seed(database_url: str) -> None:
    setup_django(database_url)
    from django.db import connection

    from messaging.models import ChannelBinding
    from tenants.models import Tenant

    tenant = Tenant.objects.create(name="Bench", slug="bench")
    ChannelBinding.dangerously_unscoped.create(tenant=tenant, provider="meta_direct", channel_source="whatsapp",
                                               external_id=PHONE_NUMBER_ID)
    with connection.cursor() as cursor:
        cursor.execute("CREATE TABLE bench_floor (id bigserial PRIMARY KEY, body text NOT NULL)")


_counter = itertools.count()


def webhook_request() -> bytes:
    contact = random.randrange(CONTACTS)
    # As Meta sends them since April 2026: the number and the business-scoped user id (BSUID).
    sender, user_id = f"54911{contact:06d}", f"AR.{13491208655302741918 + contact}"
    body = json.dumps({"object": "whatsapp_business_account", "entry": [{"id": "WABA", "changes": [{
        "field": "messages", "value": {
            "messaging_product": "whatsapp",
            "metadata": {"display_phone_number": "15550001111", "phone_number_id": PHONE_NUMBER_ID},
            "contacts": [{"profile": {"name": "Bench"}, "wa_id": sender, "user_id": user_id}],
            "messages": [{"from": sender, "from_user_id": user_id, "id": f"wamid.{uuid.uuid4().hex}",
                          "timestamp": str(int(time.time())), "type": "text",
                          "text": {"body": f"hola {next(_counter)}"}}]}}]}]}).encode()
    signature = "sha256=" + hmac.new(SECRET, body, hashlib.sha256).hexdigest()
    return http_request("POST", "/webhooks/meta/", body,
                        {"Content-Type": "application/json", "X-Hub-Signature-256": signature})


def floor_request() -> bytes:
    body = json.dumps({"n": next(_counter), "text": "x" * 400}).encode()
    signature = "sha256=" + hmac.new(SECRET, body, hashlib.sha256).hexdigest()
    return http_request("POST", "/bench/floor", body, {"Content-Type": "application/json",
                                                       "X-Hub-Signature-256": signature})


def bare_request() -> bytes:
    return http_request("GET", "/bench/bare")


LAYOUTS = {
    "gunicorn 2x8 (production)": [sys.executable, "-m", "gunicorn", "platform_ai.wsgi:application", "--bind",
                                  f"127.0.0.1:{PORT}", "--workers", "2", "--threads", "8", "--worker-class", "gthread"],
    "daphne 1 process (make up)": [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(PORT),
                                   "platform_ai.asgi:application"],
}
TARGETS = {"bare view": bare_request, "floor (HMAC + 1 insert)": floor_request, "Meta webhook": webhook_request}


def _wait_for_line(path: str, text: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while text not in Path(path).read_text(errors="replace"):
        if time.monotonic() > deadline:
            raise RuntimeError(f"{text!r} never appeared in {path}")
        time.sleep(0.2)


BACKLOG_SQL = "SELECT count(*) FROM messaging_inbounddelivery"


class InboxWatch:
    """The inbox's backlog sampled every 0.25 s while a load runs (one count on the bench's own
    connection), and the worker's CPU over the same time."""

    def __init__(self, database_url: str, worker_pid: int):
        self.url = database_url
        self.conn = psycopg.connect(database_url, autocommit=True)
        self.worker = psutil.Process(worker_pid)
        self.peak = 0

    def backlog(self) -> int:
        return self.conn.execute(BACKLOG_SQL).fetchone()[0]

    def autovacuums(self) -> dict:
        rows = self.conn.execute(
            "SELECT relname, autovacuum_count, autoanalyze_count FROM pg_stat_user_tables WHERE relname IN "
            "('messaging_inbounddelivery', 'messaging_chatmessage', 'messaging_chatconversation', 'procrastinate_jobs')"
        ).fetchall()
        return {name: vacuums + analyzes for name, vacuums, analyzes in rows}

    def messages(self) -> int:
        return self.conn.execute("SELECT count(*) FROM messaging_chatmessage").fetchone()[0]

    def _cpu(self) -> float:
        times = [self.worker.cpu_times()] + [child.cpu_times() for child in self.worker.children(recursive=True)]
        return sum(t.user + t.system for t in times)

    def __enter__(self):
        self.cpu_start, self.peak, self._stop = self._cpu(), 0, threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self):
        with psycopg.connect(self.url, autocommit=True) as conn:
            while not self._stop.wait(0.25):
                self.peak = max(self.peak, conn.execute(BACKLOG_SQL).fetchone()[0])

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.cpu_seconds = self._cpu() - self.cpu_start

    def drain_seconds(self, timeout: float = 300) -> float:
        started = time.monotonic()
        while self.backlog():
            if time.monotonic() - started > timeout:
                raise RuntimeError(f"the worker left {self.backlog()} deliveries after {timeout}s")
            time.sleep(0.05)
        return round(time.monotonic() - started, 2)


def server_collections(directory: Path, worker_pid: int, windows: dict) -> dict:
    """The server processes' garbage collections during each load: how many of each generation,
    the longest pause and all pauses together (each pause holds every thread of its process)."""
    pauses = []
    for path in directory.glob("gc-*.json"):
        if path.name != f"gc-{worker_pid}.json":
            pauses += json.loads(path.read_text())["pauses"]
        path.unlink()
    summary = {}
    for name, (start, end) in windows.items():
        inside = [(seconds, generation) for at, seconds, generation in pauses if start <= at <= end]
        summary[name] = {
            "collections_by_generation": [sum(1 for _, g in inside if g == gen) for gen in (0, 1, 2)],
            "longest_ms": round(max((s for s, _ in inside), default=0) * 1000, 1),
            "total_ms": round(sum(s for s, _ in inside) * 1000, 1),
        }
    return summary


def main() -> int:
    database_url = reset_scratch_database()
    _seed(database_url)
    # The buffer's turns are not part of ingest: their jobs wait an hour (the binding has no agent).
    gc_logs = Path(tempfile.mkdtemp(prefix="bench-gc-"))
    env = child_env(database_url, DJANGO_SETTINGS_MODULE="msg_settings", BENCH_GC_LOG_DIR=gc_logs,
                    PYTHONPATH=f"{ROOT / 'bench'}:{ROOT}", MESSAGE_BUFFER_SECONDS=3600)
    results = {"seconds_per_target": SECONDS, "concurrency": 10, "layouts": {}}
    use_wrk = USE_WRK and wrk_available()
    results["generator"] = "wrk" if use_wrk else "python"
    for layout, command in LAYOUTS.items():
        if ONLY and not layout.startswith(ONLY):
            continue
        log = open(ROOT / "bench" / "results" / f"webhook_ingest_{layout.split()[0]}.log", "w")
        server = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
        worker = subprocess.Popen([sys.executable, "manage.py", "run_worker"], cwd=ROOT, env=env, stdout=log,
                                  stderr=subprocess.STDOUT)
        try:
            wait_for_port(PORT)
            _wait_for_line(log.name, "Worker: concurrency")  # the worker's start-up CPU is over
            time.sleep(2)
            figures, windows = {}, {}
            watch = InboxWatch(database_url, worker.pid)
            with RssSampler(server=server.pid, worker=worker.pid) as rss:
                for name, make in TARGETS.items():
                    warm = load("127.0.0.1", PORT, make, seconds=2)  # warm-up: connections, imports, caches
                    is_webhook = name == "Meta webhook"
                    if is_webhook:
                        watch.drain_seconds()
                        before, vacuums_before = watch.messages(), watch.autovacuums()
                    if is_webhook and PAUSE_WORKER:
                        os.kill(worker.pid, signal.SIGSTOP)
                    with watch:
                        window_start = time.time()
                        if use_wrk:
                            figures[name] = load_wrk("127.0.0.1", PORT, make, seconds=SECONDS,
                                                     expected_rps=8000 if name == "bare view" else 3000)
                        else:
                            figures[name] = load("127.0.0.1", PORT, make, seconds=SECONDS)
                        windows[name] = (window_start, time.time())
                    if is_webhook and PAUSE_WORKER:
                        os.kill(worker.pid, signal.SIGCONT)
                    if is_webhook:
                        accepted = figures[name]["requests"] - figures[name]["non_2xx"] - figures[name]["errors"]
                        figures["inbox"] = {
                            "backlog_at_end": watch.backlog(), "peak_backlog": watch.peak,
                            "drain_seconds_after_load": watch.drain_seconds(),
                            "accepted": accepted, "stored": watch.messages() - before,
                            "worker_cpu_ms_per_delivery": round(watch.cpu_seconds * 1000 / max(accepted, 1), 3),
                            "autovacuum_or_analyze_runs": {name: n - vacuums_before.get(name, 0)
                                                           for name, n in watch.autovacuums().items()
                                                           if n - vacuums_before.get(name, 0)},
                        }
                        print(f"{layout:28} {'  inbox':26} {figures['inbox']} (warm-up: {warm['requests']})", flush=True)
                    print(f"{layout:28} {name:26} {figures[name]}", flush=True)
            webhook, bare, floor = figures["Meta webhook"], figures["bare view"], figures["floor (HMAC + 1 insert)"]
            figures["webhook / bare"] = round(webhook["rps"] / bare["rps"], 3)
            figures["webhook / floor"] = round(webhook["rps"] / floor["rps"], 3)
            figures["peak_rss_mb"] = rss.megabytes()
            results["layouts"][layout] = figures
            watch.conn.close()
        finally:
            stop(server)
            stop(worker)
        if layout in results["layouts"]:
            collections = server_collections(gc_logs, worker.pid, windows)
            results["layouts"][layout]["gc_in_server"] = collections
            for name, figures_gc in collections.items():
                print(f"{layout:28} {'  gc: ' + name:26} {figures_gc}", flush=True)
    out = ROOT / "bench" / "results" / "webhook_ingest.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(results, indent=2))
    print(json.dumps({k: {m: v for m, v in f.items() if not isinstance(v, dict)} for k, f in results["layouts"].items()},
                     indent=2))
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    sys.exit(main())
