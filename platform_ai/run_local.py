"""`make up`: daphne (HTTP + websockets) and one background worker, stopped together.

Ctrl-C (or SIGTERM) stops every child gracefully: each gets exactly one SIGTERM, the signal
that means "finish what you are doing, then exit" to all of them (gunicorn's SIGINT is its quick
stop; the worker's second signal is its immediate stop). The children run in their own process
group, so a terminal's Ctrl-C, which goes to the whole foreground group, reaches only this
supervisor and is not delivered twice. A second Ctrl-C stops them at once (SIGINT, then SIGKILL
after a grace period). If the supervisor itself is killed, the kernel sends each child SIGTERM
(PR_SET_PDEATHSIG), so nothing is left serving. Children exit normally, so the embedded
PostgreSQL they share is stopped by the last one to leave.
"""

from __future__ import annotations

import ctypes
import functools
import os
import signal
import subprocess
import sys
import time

import environ

env = environ.Env()

# Long enough for gunicorn's --graceful-timeout (20 s) and for a worker's running jobs.
GRACE_SECONDS = 30.0
_PR_SET_PDEATHSIG = 1


def _die_with_parent(parent: int) -> None:  # pragma: no cover - runs in the child between fork and exec
    try:
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):  # not Linux: Ctrl-C still stops the children
        return
    if os.getppid() != parent:  # the supervisor died before the request took effect
        os._exit(128 + signal.SIGTERM)  # (this child still runs the supervisor's signal handlers)


def supervise(commands: list[list[str]], banner: str, grace: float = GRACE_SECONDS) -> int:
    """Start every command; when one exits, or on Ctrl-C / SIGTERM, stop the others.

    Returns the first failure among the children's exit statuses (0 when all stopped cleanly)."""
    signals_received: list[int] = []

    def on_signal(signum, frame):
        signals_received.append(signum)

    # Explicit handlers: a supervisor started from a script with `&` inherits SIGINT ignored.
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, on_signal)
    children = [
        subprocess.Popen(command, process_group=0, preexec_fn=functools.partial(_die_with_parent, os.getpid()))
        for command in commands
    ]
    print(banner, flush=True)

    def send(sig: int) -> None:
        for child in children:
            if child.poll() is None:
                child.send_signal(sig)

    while not signals_received and all(child.poll() is None for child in children):
        time.sleep(0.2)
    for command, child in zip(commands, children):
        if not signals_received and child.poll() is not None:
            print(f"{' '.join(command[1:3])} exited (status {child.returncode}): stopping the others", flush=True)
    send(signal.SIGTERM)
    handled = len(signals_received)
    deadline = time.monotonic() + grace
    while any(child.poll() is None for child in children):
        if len(signals_received) > handled:  # a second Ctrl-C: now
            handled = len(signals_received)
            send(signal.SIGINT)
            deadline = min(deadline, time.monotonic() + 5)
        if time.monotonic() > deadline:
            send(signal.SIGKILL)
            break
        time.sleep(0.1)
    for child in children:
        child.wait()
    failed = next((child.returncode for child in children if child.returncode not in (0, -signal.SIGTERM)), 0)
    return 128 - failed if failed < 0 else failed  # killed by signal N: 128 + N, as a shell reports it


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
