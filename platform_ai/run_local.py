"""`make up`: daphne (HTTP + websockets) and one background worker, stopped together.

Ctrl-C (or SIGTERM) stops both children, which exit normally so the embedded PostgreSQL they
share is stopped cleanly by the last one to leave.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import environ

env = environ.Env()


def supervise(commands: list[list[str]], banner: str) -> int:
    """Start every command; when one exits (or on Ctrl-C / SIGTERM) stop the others."""
    children = [subprocess.Popen(command) for command in commands]
    print(banner, flush=True)

    def stop(*_):
        for child in children:
            if child.poll() is None:
                child.send_signal(signal.SIGINT)

    signal.signal(signal.SIGTERM, stop)
    try:
        while all(child.poll() is None for child in children):
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    stop()
    for child in children:
        try:
            child.wait(timeout=15)
        except subprocess.TimeoutExpired:
            child.kill()
    return max((child.returncode or 0) for child in children)


def main() -> int:
    host, port = env("HOST", default="127.0.0.1"), env("PORT", default="8000")
    python = sys.executable
    return supervise(
        [
            [python, "manage.py", "run_worker"],
            [python, "-m", "daphne", "-b", host, "-p", str(port), "platform_ai.asgi:application"],
        ],
        f"\n  Platform AI on http://{host}:{port}/admin/  (API docs: /api/docs/)  Ctrl-C stops.\n",
    )


if __name__ == "__main__":
    sys.exit(main())
