"""Discovery for the isolation matrix: every id-taking route and every tenant-scoped admin.

Each app's tests package may have a `factories.py` with
`ISOLATION_FACTORIES = {Model: callable(tenant) -> instance}`; the matrix uses them to create
tenant B's object for every route whose viewset (or view) declares that `model`. A route that
takes an id and whose model has no factory fails the matrix, so new routes are covered.
"""

from __future__ import annotations

import importlib
import pkgutil

from django.urls import URLPattern, URLResolver, get_resolver

import tests

# Routes that take a path argument which is not a tenant-owned object id (url name -> why).
NOT_TENANT_OBJECT_ROUTES = {
    "template-instantiate": "template keys name global catalogue entries",
    "templates-instantiate": "template keys name global catalogue entries",
    "template-detail": "template keys name global catalogue entries",
    "templates-detail": "template keys name global catalogue entries",
}


def isolation_factories() -> dict:
    factories = {}
    for module in pkgutil.iter_modules(tests.__path__):
        if not module.ispkg:
            continue
        try:
            mod = importlib.import_module(f"tests.{module.name}.factories")
        except ModuleNotFoundError:
            continue
        factories.update(getattr(mod, "ISOLATION_FACTORIES", {}))
    return factories


def _walk(patterns, prefix=""):
    for entry in patterns:
        if isinstance(entry, URLResolver):
            yield from _walk(entry.url_patterns, prefix + str(entry.pattern))
        elif isinstance(entry, URLPattern):
            yield prefix + str(entry.pattern), entry


def id_routes():
    """(route string, pattern, view class, model, {http method: action}) for API routes with ids."""
    for route, pattern in _walk(get_resolver().url_patterns):
        if not route.startswith("api/v1/") or not pattern.pattern.regex.groupindex:
            continue
        if pattern.name in NOT_TENANT_OBJECT_ROUTES:
            continue
        callback = pattern.callback
        cls = getattr(callback, "cls", None) or getattr(callback, "view_class", None)
        actions = getattr(callback, "actions", None)
        if actions is None and cls is not None:
            actions = {m: m for m in ("get", "put", "patch", "delete", "post") if hasattr(cls, m)}
        yield route, pattern, cls, getattr(cls, "model", None), actions or {}
