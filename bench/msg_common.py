"""Shared pieces of the messaging benchmarks: a scratch database on the worktree's embedded
PostgreSQL, environment for child processes, an RSS sampler and a keep-alive load generator."""

from __future__ import annotations

import asyncio
import base64
import os
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parent.parent
SCRATCH_DB = "bench_messaging"
BENCH_FIELD_ENCRYPTION_KEY = base64.urlsafe_b64encode(b"bench-only-key, scratch database".ljust(32, b"-")).decode()
sys.path.insert(0, str(ROOT))


def embedded_settings() -> dict:
    from platform_ai import embedded_pg

    server = embedded_pg.start(ROOT / ".data" / "postgres")
    return embedded_pg.database_settings(server)


def reset_scratch_database() -> str:
    """Drop and recreate the scratch database, migrate it, and return its DATABASE_URL."""
    import psycopg

    db = embedded_settings()
    with psycopg.connect(dbname="postgres", user=db["USER"], host=db["HOST"], port=db["PORT"], autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{SCRATCH_DB}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{SCRATCH_DB}"')
    url = f"postgres://{db['USER']}@/{SCRATCH_DB}?host={db['HOST']}&port={db['PORT']}"
    subprocess.run([sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"], cwd=ROOT, env=child_env(url),
                   check=True)
    return url


def child_env(database_url: str, **extra) -> dict:
    """Environment of a process on the scratch database (production mode: explicit secrets)."""
    env = dict(os.environ)
    env.update(
        DATABASE_URL=database_url,
        SECRET_KEY="bench-secret",
        # The scratch database holds only the benchmark's own tenants, so a fixed key will do; it also
        # lets `make bench` run on a fresh clone before `make up` has created .data/'s keys.
        FIELD_ENCRYPTION_KEY=BENCH_FIELD_ENCRYPTION_KEY,
        INTERNAL_SECRET_KEY="bench-internal",
        META_APP_SECRET="bench-app-secret",
        LOG_LEVEL="WARNING",
        PYTHONPATH=str(ROOT),
    )
    env.update({k: str(v) for k, v in extra.items()})
    return env


def setup_django(database_url: str, **extra) -> None:
    os.environ.update(child_env(database_url, **extra))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "platform_ai.settings")
    import django

    django.setup()


class RssSampler:
    """Peak resident memory of process trees (a parent and all its children), sampled every 0.2 s."""

    def __init__(self, **roots: int):
        self.roots = roots
        self.peak = {name: 0 for name in roots}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _tree_rss(self, pid: int) -> int:
        try:
            parent = psutil.Process(pid)
            procs = [parent, *parent.children(recursive=True)]
        except psutil.Error:
            return 0
        total = 0
        for proc in procs:
            try:
                total += proc.memory_info().rss
            except psutil.Error:
                pass
        return total

    def _run(self):
        while not self._stop.is_set():
            for name, pid in self.roots.items():
                self.peak[name] = max(self.peak[name], self._tree_rss(pid))
            time.sleep(0.2)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()

    def megabytes(self) -> dict:
        return {name: round(value / 2**20, 1) for name, value in self.peak.items()}


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q / 100 * (len(ordered) - 1))))]


async def _client(host, port, make_request, deadline, latencies, errors):
    reader, writer = await asyncio.open_connection(host, port)
    try:
        while time.perf_counter() < deadline:
            request = make_request()
            started = time.perf_counter()
            writer.write(request)
            status_line = await asyncio.wait_for(reader.readline(), 30)  # a hung server fails the run
            length = 0
            while True:
                line = await reader.readline()
                if line in (b"\r\n", b""):
                    break
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":")[1])
            if length:
                await reader.readexactly(length)
            latencies.append(time.perf_counter() - started)
            if not status_line.startswith(b"HTTP/1.1 2"):
                errors.append(status_line.decode(errors="replace").strip())
    finally:
        writer.close()


def load(host: str, port: int, make_request, *, seconds: float, concurrency: int = 10) -> dict:
    """Closed-loop load: `concurrency` keep-alive connections for `seconds`; req/s and latency."""
    latencies: list[float] = []
    errors: list[str] = []

    async def run():
        deadline = time.perf_counter() + seconds
        await asyncio.gather(*[_client(host, port, make_request, deadline, latencies, errors)
                               for _ in range(concurrency)])

    started = time.perf_counter()
    asyncio.run(run())
    elapsed = time.perf_counter() - started
    ms = [latency * 1000 for latency in latencies]
    return {
        "requests": len(ms), "errors": len(errors), "first_error": errors[0] if errors else None,
        "rps": round(len(ms) / elapsed, 1),
        "p50_ms": round(statistics.median(ms), 2) if ms else None,
        "p99_ms": round(percentile(ms, 99), 2) if ms else None,
    }


def http_request(method: str, path: str, body: bytes = b"", headers: dict | None = None) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1", f"Content-Length: {len(body)}"]
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def wait_for_port(port: int, timeout: float = 60) -> None:
    import socket

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    raise RuntimeError(f"nothing listens on port {port} after {timeout}s")


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()


_WRK_SCRIPT = r"""
local requests, n, i = {}, 0, 0
function setup(thread)
  thread:set("id", __thread_id or 0)
end
function init(args)
  local f = assert(io.open(args[1], "rb"))
  local data = f:read("*a")
  f:close()
  local start = 1
  while true do
    local stop = string.find(data, "\0", start, true)
    if not stop then break end
    n = n + 1
    requests[n] = string.sub(data, start, stop - 1)
    start = stop + 1
  end
end
function request()
  i = i + 1
  if i > n then i = 1 end
  return requests[i]
end
function done(summary, latency, requests)
  local errors = summary.errors.connect + summary.errors.read + summary.errors.write
      + summary.errors.status + summary.errors.timeout
  io.write(string.format("WRK %d %d %d %.3f %.3f %d\n", summary.requests, summary.duration, errors,
      latency:percentile(50) / 1000, latency:percentile(99) / 1000, summary.errors.status))
end
"""


def wrk_available() -> bool:
    import shutil

    return shutil.which("wrk") is not None


def load_wrk(host: str, port: int, make_request, *, seconds: float, concurrency: int = 10,
             expected_rps: int = 3000) -> dict:
    """The same closed-loop load as `load`, generated by wrk (C, one thread): a Python generator
    takes most of a core on this 2-core machine and caps the server. Requests are built up front
    (`make_request` is called expected_rps x seconds times) and replayed in order, so message ids
    stay unique while the run lasts."""
    import tempfile

    count = int(expected_rps * seconds)
    with tempfile.TemporaryDirectory() as tmp:
        requests_file, script = Path(tmp) / "requests.bin", Path(tmp) / "script.lua"
        with open(requests_file, "wb") as out:
            for _ in range(count):
                out.write(make_request() + b"\0")
        script.write_text(_WRK_SCRIPT)
        done = subprocess.run(
            ["wrk", "-t1", f"-c{concurrency}", f"-d{int(seconds)}s", "--timeout", "30s", "-s", str(script),
             f"http://{host}:{port}/", "--", str(requests_file)],
            capture_output=True, text=True,
        )
    if done.returncode:
        raise RuntimeError(f"wrk failed ({done.returncode}): {done.stderr.strip() or done.stdout.strip()}")
    line = next(line for line in done.stdout.splitlines() if line.startswith("WRK "))
    requests, duration_us, errors, p50, p99, status_errors = line.split()[1:]
    rps = int(requests) / (int(duration_us) / 1e6)
    if rps * seconds > count:
        print(f"warning: {int(requests)} requests replayed {count} prepared ones", file=sys.stderr)
    return {"requests": int(requests), "errors": int(errors), "non_2xx": int(status_errors),
            "rps": round(rps, 1), "p50_ms": round(float(p50), 2), "p99_ms": round(float(p99), 2),
            "generator": "wrk"}
