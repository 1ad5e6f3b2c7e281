"""Relay at scale: 10,000 messages to 2,000 recipients (5 parts each, RELAY_SPACING_SECONDS=4)
against a local zero-latency provider, one worker (its relay dispatcher: RELAY_CONCURRENCY sends
at once), with a kill -9 of the worker mid-run and an immediate restart. Then a paced phase
(arrivals well below capacity) for lateness after the slot. Reports spacing violations, lateness
p50/p99, throughput, lost and doubled messages, CPU per message (workers, PostgreSQL, the local
provider) while draining, and peak RSS of the worker. Writes bench/results/relay_scale[_N_workers].json.

Usage: .venv/bin/python bench/relay_scale.py [recipients] [paced_recipients] [workers]
With several workers (default 1) the first one is the one killed; the throughput is theirs together.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psutil

from msg_common import ROOT, RssSampler, child_env, percentile, reset_scratch_database, setup_django

RECIPIENTS = int(sys.argv[1]) if len(sys.argv) > 1 else 2000
PACED = int(sys.argv[2]) if len(sys.argv) > 2 else 200
WORKERS = int(sys.argv[3]) if len(sys.argv) > 3 else 1
PARTS = 5
SPACING = 4.0
WORKER_ENV = dict(RELAY_SPACING_SECONDS=SPACING, PROCRASTINATE_HEARTBEAT_SECONDS=1, PROCRASTINATE_STALLED_SECONDS=3,
                  PROCRASTINATE_WORKER_CONCURRENCY=10, PROCRASTINATE_POLLING_INTERVAL=0.1,
                  RELAY_ORPHAN_SECONDS=3, RELAY_POLL_SECONDS=0.1)


def seed(count: int, prefix: str):
    from django.utils import timezone

    from messaging.models import ChannelBinding, ChatConversation
    from tenants.models import Tenant
    from vault.credentials import set_tenant_credential

    tenant, _ = Tenant.objects.get_or_create(slug="bench", defaults={"name": "Bench"})
    binding, _ = ChannelBinding.dangerously_unscoped.get_or_create(
        tenant=tenant, provider="meta_direct", channel_source="whatsapp", external_id="PN-BENCH")
    set_tenant_credential(tenant.pk, "whatsapp_cloud", "ACCESS_TOKEN", "bench-token")
    now = timezone.now()
    return ChatConversation.dangerously_unscoped.bulk_create([
        ChatConversation(tenant=tenant, binding=binding, provider="meta_direct", channel_source="whatsapp",
                         contact_external_id=f"{prefix}{i:06d}", last_inbound_at=now)
        for i in range(count)
    ])


def enqueue(conversations, threads: int, pause: float = 0.0) -> float:
    """relay_parts for every conversation (5 parts each) from `threads` threads; returns seconds."""
    from django.db import close_old_connections

    from messaging.relay import relay_parts

    def one(conversation):
        relay_parts(conversation=conversation, parts=[f"{conversation.contact_external_id} part {i}"
                                                      for i in range(PARTS)], role="agent")
        close_old_connections()
        if pause:
            time.sleep(pause)

    started = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(one, conversations))
    return time.perf_counter() - started


def start_worker(database_url, provider_url, log):
    return subprocess.Popen([sys.executable, "manage.py", "run_worker"], cwd=ROOT,
                            env=child_env(database_url, META_GRAPH_BASE=provider_url, **WORKER_ENV),
                            stdout=log, stderr=subprocess.STDOUT)


def cpu_seconds(processes) -> float:
    total = 0.0
    for proc in processes:
        try:
            times = proc.cpu_times()
            total += times.user + times.system
        except psutil.Error:
            pass
    return total


def cpu_snapshot(workers) -> dict:
    """CPU seconds so far of the workers, of every PostgreSQL process, and of this process (the
    local provider server runs in it)."""
    return {
        "workers": cpu_seconds(psutil.Process(w.pid) for w in workers),
        "postgresql": cpu_seconds(p for p in psutil.process_iter(["name"]) if p.info["name"] == "postgres"),
        "provider + bench": cpu_seconds([psutil.Process()]),
    }


def analyse(provider, messages) -> dict:
    """Join the provider's deliveries (by idempotency key) with the messages' scheduled slots."""
    by_key = {str(m["idempotency_key"]): m for m in messages}
    delivered = [d for d in provider.deliveries() if d["headers"].get("Idempotency-Key") in by_key]
    lateness, lanes = [], defaultdict(list)
    for d in delivered:
        message = by_key[d["headers"]["Idempotency-Key"]]
        lateness.append((d["at"] - message["scheduled_at"].timestamp()) * 1000)
        lanes[d["json"]["to"]].append(d["at"])
    violations = sum(1 for times in lanes.values() for a, b in zip(times, times[1:]) if b - a < SPACING - 0.001)
    times = sorted(d["at"] for d in delivered)
    return {
        "messages": len(messages), "delivered": len(delivered), "lost": len(messages) - len(delivered),
        "doubled_deliveries": 0,  # the provider delivers a key once; resends are counted below
        "resent_same_key": provider.replays, "spacing_violations": violations,
        "lateness_ms_p50": round(percentile(lateness, 50), 1), "lateness_ms_p99": round(percentile(lateness, 99), 1),
        "span_s": round(times[-1] - times[0], 2) if times else None,
    }


def wait_all(provider, expected: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and len(provider.deliveries()) < expected:
        time.sleep(0.5)


def main() -> int:
    database_url = reset_scratch_database()
    setup_django(database_url, RELAY_SPACING_SECONDS=SPACING)
    from django.conf import settings

    from messaging.models import ChatMessage
    from tests.messaging.provider_server import ProviderServer

    results = {"recipients": RECIPIENTS, "parts": PARTS, "spacing_s": SPACING, "workers": WORKERS,
               "relay_concurrency": settings.RELAY_CONCURRENCY}
    log = open(ROOT / "bench" / "results" / "relay_scale_worker.log", "w")
    with ProviderServer() as provider:
        # Phase 1: the whole backlog is queued first, then one worker drains it; kill -9 halfway.
        conversations = seed(RECIPIENTS, "549110")
        results["enqueue_s"] = round(enqueue(conversations, threads=4), 1)
        total = RECIPIENTS * PARTS
        workers = [start_worker(database_url, provider.url, log) for _ in range(WORKERS)]
        with RssSampler(**{f"worker{i}": w.pid for i, w in enumerate(workers)}) as rss:
            while not provider.deliveries() and workers[0].poll() is None:
                time.sleep(0.01)
            cpu_before, at_first = cpu_snapshot(workers), len(provider.deliveries())
            while len(provider.deliveries()) < total // 2 and workers[0].poll() is None:
                time.sleep(0.05)
            cpu_after, at_kill = cpu_snapshot(workers), len(provider.deliveries())
            drained = max(at_kill - at_first, 1)
            cpu_ms = {k: round((cpu_after[k] - cpu_before[k]) / drained * 1000, 2) for k in cpu_after}
            first = provider.deliveries()[0]["at"] if at_kill else time.time()
            drained_s = max(time.time() - first, 1e-3)  # from the first send, not the workers' boot
            workers[0].kill()  # SIGKILL: no cleanup; its claimed lanes wait for RELAY_ORPHAN_SECONDS
            workers[0].wait()
            workers[0] = start_worker(database_url, provider.url, log)
            wait_all(provider, total, timeout=600)
        phase1 = analyse(provider, list(ChatMessage.dangerously_unscoped.values("idempotency_key", "scheduled_at")))
        phase1.update(killed_after=at_kill, throughput_msgs_per_s=round(at_kill / drained_s, 1),
                      cpu_ms_per_msg=cpu_ms,
                      worker_peak_rss_mb=max(rss.megabytes().values()))
        results["backlog_with_kill"] = phase1
        print("backlog + kill -9:", json.dumps(phase1), flush=True)

        # Phase 2: paced arrivals (one enqueuing thread, well under the worker's capacity).
        before = set(ChatMessage.dangerously_unscoped.values_list("id", flat=True))
        paced = seed(PACED, "549220")
        with RssSampler(**{f"worker{i}": w.pid for i, w in enumerate(workers)}) as rss:
            results_enqueue = enqueue(paced, threads=1, pause=0.05)
            wait_all(provider, total + PACED * PARTS, timeout=300)
        rows = list(ChatMessage.dangerously_unscoped.exclude(id__in=before).values("idempotency_key", "scheduled_at"))
        phase2 = analyse(provider, rows)
        phase2.update(arrival_msgs_per_s=round(PACED * PARTS / results_enqueue, 1),
                      worker_peak_rss_mb=max(rss.megabytes().values()))
        results["paced"] = phase2
        print("paced:", json.dumps(phase2), flush=True)
        for worker in workers:
            worker.terminate()
        for worker in workers:
            worker.wait(15)
    (ROOT / "bench" / "results" / f"relay_scale{'' if WORKERS == 1 else f'_{WORKERS}_workers'}.json").write_text(json.dumps(results, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    sys.exit(main())
