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


class ReleaseRequestCycles:
    """Let each request be freed by reference counting instead of by the garbage collector.

    Django's middleware ties a request into reference cycles: `request.user` is a lazy object whose
    closure holds the request, `request.auser` a partial of it, and the messages storage points back
    at it. Each request therefore left 34-45 objects (session, signer, storages, resolver match)
    that only a collection could free, and a collection runs for every 2,000 such leftovers; in a
    gunicorn worker each one holds all of its threads. When the server closes the response, after
    the last byte went out, the request's attributes are dropped, which breaks those cycles
    (measured under webhook load: 0.5-1.0 s of collector pauses per 10 s became 28-59 ms,
    bench/README.md). Uploaded files are closed first, as `HttpRequest.close()` would do; it runs
    after this and then finds nothing left to close. First in MIDDLEWARE. RELEASE_REQUEST_CYCLES
    =false turns it off (to compare). Tests: Django's test client closes the response before it
    returns it, so `response.wsgi_request` comes back emptied; assert on the response (or the
    database), not on the request.
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        if settings.RELEASE_REQUEST_CYCLES:
            response._resource_closers.append(_releaser(request))
        return response


def _releaser(request):
    def release():
        request.close()
        request.__dict__.clear()

    return release
