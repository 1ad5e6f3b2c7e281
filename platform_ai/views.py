"""Platform-level endpoints that belong to no single app."""

import logging

from django.db import connection
from django.http import JsonResponse

logger = logging.getLogger(__name__)

# Apps add named probes here (e.g. rag's vector drift); each returns a JSON-able dict.
HEALTH_DETAILS: dict[str, callable] = {}


def healthz(request):
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        database = "ok"
    except Exception as exc:  # noqa: BLE001 - any failure means "down"
        logger.warning("Health check: database unavailable: %s", type(exc).__name__)
        database = "unavailable"
    body = {"status": "ok" if database == "ok" else "error", "database": database}
    if database == "ok":
        for name, probe in HEALTH_DETAILS.items():
            try:
                body[name] = probe()
            except Exception as exc:  # noqa: BLE001 - a detail must never take health down
                body[name] = {"error": type(exc).__name__}
    return JsonResponse(body, status=200 if database == "ok" else 503)
