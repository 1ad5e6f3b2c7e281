"""Errors of the connect flows; each names the provider and the problem in words staff can act on."""

from __future__ import annotations


class ConnectError(Exception):
    """A connect step failed. `code` is the API error code; the message is safe to show."""

    status = 400

    def __init__(self, message: str, *, code: str = "connect_failed", status: int | None = None):
        super().__init__(message)
        self.code = code
        if status is not None:
            self.status = status


class NotConfigured(ConnectError):
    status = 503

    def __init__(self, message: str):
        super().__init__(message, code="not_configured")
