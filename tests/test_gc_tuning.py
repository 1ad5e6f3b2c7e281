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
