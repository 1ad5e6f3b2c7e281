"""`make prod`: the production layout on one machine, one command.

- HTTP (API, admin, webhooks, relay): gunicorn, WSGI, WEB_PROCESSES × WEB_THREADS on PORT.
  Django over ASGI costs 5-9x request capacity here (../shared/STACK.md), so daphne does not
  serve HTTP in production.
- Websockets (/ws/): daphne on WS_PORT (default PORT + 1).
- Background jobs: WORKERS workers (procrastinate jobs: buffer, mail, ingestion; the relay dispatcher).

A reverse proxy sends /ws/ to WS_PORT and everything else to PORT (README, "Production serving").
Scale out by running more of any of these on other machines against the same database (live
events reach every daphne through PostgreSQL NOTIFY; Redis, when set, is the shared cache).
"""

from __future__ import annotations

import os
import sys

import environ

from platform_ai.run_local import supervise

env = environ.Env()


def commands() -> tuple[list[list[str]], str]:
    host = env("HOST", default="127.0.0.1")
    port = env.int("PORT", default=8000)
    ws_port = env.int("WS_PORT", default=port + 1)
    processes = env.int("WEB_PROCESSES", default=max(2, os.cpu_count() or 2))
    threads = env.int("WEB_THREADS", default=8)
    workers = env.int("WORKERS", default=1)
    python = sys.executable
    web = [
        python, "-m", "gunicorn", "platform_ai.wsgi:application", "--bind", f"{host}:{port}",
        "--workers", str(processes), "--threads", str(threads), "--worker-class", "gthread",
        "--graceful-timeout", "20", "--timeout", "60",
    ]
    websockets = [python, "-m", "daphne", "-b", host, "-p", str(ws_port), "platform_ai.asgi:application"]
    background = [[python, "manage.py", "run_worker"] for _ in range(workers)]
    banner = (
        f"\n  HTTP  (gunicorn, {processes}x{threads}): http://{host}:{port}/\n"
        f"  /ws/  (daphne):                 ws://{host}:{ws_port}/ws/\n"
        f"  workers (procrastinate):        {workers}\n"
        "  Put a reverse proxy in front: /ws/ -> the daphne port, everything else -> gunicorn.\n"
    )
    return [web, websockets, *background], banner


def main() -> int:
    return supervise(*commands())


if __name__ == "__main__":
    sys.exit(main())
