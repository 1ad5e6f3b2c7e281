"""One JSON error shape for the whole API: {"detail": "...", "code": "..."}."""

from __future__ import annotations

import logging

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.http import Http404
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler

logger = logging.getLogger(__name__)


def _flatten(errors, prefix="") -> list[str]:
    if isinstance(errors, dict):
        out = []
        for field, value in errors.items():
            name = field if field != "non_field_errors" else ""
            out += _flatten(value, f"{prefix}{name}" if not prefix or not name else f"{prefix}.{name}")
        return out
    if isinstance(errors, list):
        out = []
        for item in errors:
            out += _flatten(item, prefix)
        return out
    return [f"{prefix}: {errors}" if prefix else str(errors)]


def api_exception_handler(exc, context):
    if isinstance(exc, Http404):
        exc = exceptions.NotFound(str(exc) or "Not found.")
    elif isinstance(exc, DjangoPermissionDenied):
        exc = exceptions.PermissionDenied(str(exc) or "Permission denied.")
    response = exception_handler(exc, context)
    if response is None:
        view = context.get("view")
        logger.exception("Unhandled error in %s", type(view).__name__ if view else "API view", exc_info=exc)
        return Response(
            {"detail": "Internal server error; it has been logged.", "code": "server_error"},
            status=status.HTTP_500_INTERNAL_SERVER_ERROR,
        )
    if isinstance(exc, exceptions.ValidationError):
        codes = exc.get_codes()
        first_code = next(iter(_flatten(codes)), "invalid").split(": ")[-1]
        response.data = {
            "detail": "; ".join(_flatten(exc.detail)) or "Invalid input.",
            "code": first_code if first_code else "invalid",
            "errors": exc.detail,
        }
    else:
        detail = exc.detail if isinstance(exc, exceptions.APIException) else str(exc)
        code = exc.get_codes() if isinstance(exc, exceptions.APIException) else "error"
        if isinstance(detail, (dict, list)):
            detail = "; ".join(_flatten(detail))
            code = "error" if not isinstance(code, str) else code
        response.data = {"detail": str(detail), "code": code if isinstance(code, str) else "error"}
    return response
