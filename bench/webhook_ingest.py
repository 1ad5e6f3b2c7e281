"""Webhook ingest: the Meta webhook (signature, parse, binding lookup, de-duplication, message
insert, conversation upsert, buffer job check/defer, in one transaction) against a bare Django
view and the floor (signature check + one insert) on the same server, same run, same load.

Layouts: production (gunicorn WSGI, 2 processes x 8 threads) and `make up`'s single daphne.
Writes bench/results/webhook_ingest.json.
Usage: .venv/bin/python bench/webhook_ingest.py [seconds] [gunicorn|daphne] [--python-load]
The load comes from wrk when it is installed (`apt-get install wrk`; C, one thread), else from the
Python generator in msg_common, which takes most of a core and caps the server (`--python-load`
forces it, to compare).
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import random
import subprocess
import sys
import time
import uuid
from pathlib import Path

from msg_common import ROOT, RssSampler, child_env, http_request, load, reset_scratch_database, setup_django, stop
from msg_common import load_wrk, wait_for_port, wrk_available

_args = [a for a in sys.argv[1:] if not a.startswith("--")]
SECONDS = float(_args[0]) if _args else 15
ONLY = _args[1] if len(_args) > 1 else ""
USE_WRK = "--python-load" not in sys.argv
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
    sender = f"54911{random.randrange(CONTACTS):06d}"
    body = json.dumps({"object": "whatsapp_business_account", "entry": [{"id": "WABA", "changes": [{
        "field": "messages", "value": {
            "messaging_product": "whatsapp",
            "metadata": {"display_phone_number": "15550001111", "phone_number_id": PHONE_NUMBER_ID},
            "contacts": [{"profile": {"name": "Bench"}, "wa_id": sender}],
            "messages": [{"from": sender, "id": f"wamid.{uuid.uuid4().hex}", "timestamp": str(int(time.time())),
                          "type": "text", "text": {"body": f"hola {next(_counter)}"}}]}}]}]}).encode()
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


def main() -> int:
    database_url = reset_scratch_database()
    _seed(database_url)
    env = child_env(database_url, DJANGO_SETTINGS_MODULE="msg_settings",
                    PYTHONPATH=f"{ROOT / 'bench'}:{ROOT}")
    results = {"seconds_per_target": SECONDS, "concurrency": 10, "layouts": {}}
    use_wrk = USE_WRK and wrk_available()
    results["generator"] = "wrk" if use_wrk else "python"
    for layout, command in LAYOUTS.items():
        if ONLY and not layout.startswith(ONLY):
            continue
        log = open(ROOT / "bench" / "results" / f"webhook_ingest_{layout.split()[0]}.log", "w")
        server = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            wait_for_port(PORT)
            figures = {}
            with RssSampler(server=server.pid) as rss:
                for name, make in TARGETS.items():
                    load("127.0.0.1", PORT, make, seconds=2)  # warm-up: connections, imports, caches
                    if use_wrk:
                        figures[name] = load_wrk("127.0.0.1", PORT, make, seconds=SECONDS,
                                                 expected_rps=8000 if name == "bare view" else 3000)
                    else:
                        figures[name] = load("127.0.0.1", PORT, make, seconds=SECONDS)
                    print(f"{layout:28} {name:26} {figures[name]}", flush=True)
            webhook, bare, floor = figures["Meta webhook"], figures["bare view"], figures["floor (HMAC + 1 insert)"]
            figures["webhook / bare"] = round(webhook["rps"] / bare["rps"], 3)
            figures["webhook / floor"] = round(webhook["rps"] / floor["rps"], 3)
            figures["peak_rss_mb"] = rss.megabytes()["server"]
            results["layouts"][layout] = figures
        finally:
            stop(server)
    out = ROOT / "bench" / "results" / "webhook_ingest.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(results, indent=2))
    print(json.dumps({k: {m: v for m, v in f.items() if not isinstance(v, dict)} for k, f in results["layouts"].items()},
                     indent=2))
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    sys.exit(main())
