"""Settings for the ingest benchmark: the platform's, plus two comparison views on the same server.

With BENCH_GC_LOG_DIR set, every process that loads these settings (gunicorn's workers, daphne, the
worker) records each garbage collection (wall-clock start, pause, generation) and writes them to
`gc-<pid>.json` in that directory when it exits, so the benchmark can count the pauses that fell
into each load.
"""

import atexit
import gc
import json
import os
import sys
import time

from platform_ai.settings import *  # noqa: F401,F403

ROOT_URLCONF = "msg_urls"


def _record_collections(directory: str) -> None:
    pauses, started = [], [0.0, 0.0]

    def callback(phase, info):
        if phase == "start":
            started[:] = time.time(), time.perf_counter()
        else:
            pauses.append((started[0], time.perf_counter() - started[1], info["generation"]))

    def write():
        path = os.path.join(directory, f"gc-{os.getpid()}.json")
        with open(path, "w") as out:
            json.dump({"argv": sys.argv, "pauses": pauses}, out)

    gc.callbacks.append(callback)
    atexit.register(write)


if os.environ.get("BENCH_GC_LOG_DIR"):
    _record_collections(os.environ["BENCH_GC_LOG_DIR"])
