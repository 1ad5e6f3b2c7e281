"""Serving processes freeze what start-up loaded (platform_ai/gc_tuning.py), so full garbage
collections skip it; GC_FREEZE=false leaves the collector as Python sets it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _frozen_after_loading(module: str, **env) -> int:
    """How many more objects are frozen once `module` is loaded (the interpreter freezes a few itself)."""
    code = f"import gc; before = gc.get_freeze_count(); import {module}; print(gc.get_freeze_count() - before)"
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120,
                            env={**os.environ, "DJANGO_SETTINGS_MODULE": "platform_ai.settings", **env})
    assert result.returncode == 0, result.stderr
    return int(result.stdout.strip().splitlines()[-1])


def test_web_processes_freeze_their_startup_objects():
    assert _frozen_after_loading("platform_ai.wsgi") > 50_000  # Django, the URLconf and every view module
    assert _frozen_after_loading("platform_ai.asgi") > 50_000
    assert _frozen_after_loading("platform_ai.wsgi", GC_FREEZE="false") == 0


def test_the_urlconf_is_loaded_before_freezing(settings):
    import gc

    from platform_ai import gc_tuning

    settings.GC_FREEZE = True
    before = gc.get_freeze_count()
    try:
        assert gc_tuning.freeze_startup_objects() >= before
        assert "messaging.webhooks.views" in sys.modules and "messaging.api" in sys.modules
    finally:
        gc.unfreeze()  # the test process keeps collecting as before


def _cyclic_garbage_per_request(paths: list[str], rounds: int = 20) -> float:
    """Objects left per request that only the garbage collector can free, through Django's own WSGI
    handler closed as a WSGI server closes it (so the response's closers run)."""
    import gc
    import io

    from django.core.handlers.wsgi import WSGIHandler
    from django.core.signals import request_finished, request_started
    from django.db import close_old_connections

    app = WSGIHandler()

    def serve(path):
        environ = {"REQUEST_METHOD": "GET", "PATH_INFO": path, "SCRIPT_NAME": "", "QUERY_STRING": "",
                   "SERVER_NAME": "testserver", "SERVER_PORT": "80", "wsgi.input": io.BytesIO(b""),
                   "wsgi.url_scheme": "http", "wsgi.errors": sys.stderr, "REMOTE_ADDR": "127.0.0.1"}
        statuses = []
        response = app(environ, lambda status, headers: statuses.append(status))
        b"".join(response)
        response.close()
        return statuses[0]

    # The test's connection holds its transaction: keep the handler from closing it (as Django's test client does).
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    try:
        for path in paths:  # warm-up: imports, caches, compiled templates
            assert serve(path)[:3] in {"200", "302"}, path
        gc.collect()
        gc.disable()
        try:
            for _ in range(rounds):
                for path in paths:
                    serve(path)
            return gc.collect() / (rounds * len(paths))
        finally:
            gc.enable()
    finally:
        request_started.connect(close_old_connections)
        request_finished.connect(close_old_connections)


# The admin index (a redirect to the login page here) goes through the session, the user and the
# messages. A class-based view keeps a small cycle of its own (Django sets `view.head = view.get`
# on the instance), which holds the view and the emptied request until a collection: 4 objects for
# the Meta webhook, where Django alone left 45.
PAGES = ["/healthz", "/admin/"]


@pytest.mark.django_db
def test_a_served_request_leaves_no_cyclic_garbage(settings):
    settings.RELEASE_REQUEST_CYCLES = True
    assert _cyclic_garbage_per_request(PAGES) == 0


@pytest.mark.django_db
def test_without_the_release_each_request_leaves_its_cycles_to_the_collector(settings):
    settings.RELEASE_REQUEST_CYCLES = False  # what Django does by itself: the comparison the middleware exists for
    assert _cyclic_garbage_per_request(PAGES) > 20


@pytest.mark.django_db  # closing the response sends request_finished, which looks at the connection
def test_uploaded_files_are_closed_before_the_request_is_released(rf, settings):
    from django.core.files.uploadedfile import SimpleUploadedFile
    from django.http import HttpResponse

    from platform_ai.gc_tuning import ReleaseRequestCycles

    settings.RELEASE_REQUEST_CYCLES = True
    request = rf.post("/upload", {"document": SimpleUploadedFile("a.txt", b"hello")})
    seen = {}

    def view(request):
        seen["file"] = request.FILES["document"]
        return HttpResponse("ok")

    response = ReleaseRequestCycles(view)(request)
    assert not seen["file"].closed and request.FILES  # nothing is released while the response is open
    response.close()  # the server has sent the response
    assert seen["file"].closed
    assert not hasattr(request, "FILES") and not hasattr(request, "user")
