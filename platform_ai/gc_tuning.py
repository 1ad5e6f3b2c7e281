"""Keep the garbage collector's pauses short in the serving processes.

A Django process holds a few hundred thousand objects after start-up (modules, URL patterns,
views, serializers, admin). Python's collector walks all of them in every full (gen 2)
collection, holding the GIL: measured under webhook load on the 2-core machine, 170–190 ms during
which none of a gunicorn worker's eight threads ran, the source of most of the webhook's p99
spikes (bench/README.md, "Garbage collection"). `gc.freeze()` moves what exists at start-up into
a permanent generation that collections skip; full collections then take tens of milliseconds.
Every URL module (and so every view behind it) is imported first, so what the first request
would load is frozen too. GC_FREEZE=false turns it off (to compare).
"""

from __future__ import annotations

import gc

from django.conf import settings


def freeze_startup_objects() -> int:
    """Load the URLconf, collect, freeze. Returns how many objects are now frozen (0 when off)."""
    if not settings.GC_FREEZE:
        return 0
    from django.urls import get_resolver

    get_resolver().url_patterns  # noqa: B018  (imports every URL module and the views behind them)
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()
