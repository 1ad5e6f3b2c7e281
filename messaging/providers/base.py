"""The provider interface, the registry, and the shared HTTP plumbing (timeouts, error texts)."""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass

import httpx

logger = logging.getLogger(__name__)

# Connect fast or give up; a provider taking longer than this to answer is retried (with its
# idempotency key) rather than holding a worker slot.
HTTP_TIMEOUT = httpx.Timeout(15.0, connect=5.0)


@dataclass
class SendResult:
    provider_message_id: str = ""
    http_status: int | None = None


class DeliveryError(Exception):
    """A send failed. `retryable`: timeouts, connection errors, 5xx and 429; never other 4xx."""

    def __init__(self, detail: str, *, retryable: bool, http_status: int | None = None, retry_after: float | None = None):
        super().__init__(detail)
        self.detail, self.retryable, self.http_status, self.retry_after = detail, retryable, http_status, retry_after


_registry: dict[str, object] = {}


def register_provider(provider) -> None:
    _registry[provider.name] = provider


def get_provider(name: str):
    try:
        return _registry[name]
    except KeyError:
        raise DeliveryError(f"No provider named '{name}' is registered", retryable=False) from None


def registered_providers() -> dict[str, object]:
    return dict(_registry)


_client: httpx.Client | None = None
_client_lock = threading.Lock()


def http_client() -> httpx.Client:
    """One pooled client per process (thread-safe); workers run sync jobs in threads."""
    global _client
    with _client_lock:
        if _client is None:
            _client = httpx.Client(timeout=HTTP_TIMEOUT, limits=httpx.Limits(max_connections=100))
        return _client


def _error_text(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:500] or response.reason_phrase
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict):
            return str(error.get("message") or error)[:500]
        if error:
            return str(error)[:500]
        if body.get("message"):
            return str(body["message"])[:500]
    return str(body)[:500]


def post_json(url: str, *, json: dict, headers: dict, provider: str) -> tuple[dict, int]:
    """POST and return (json body, status); raise DeliveryError classified for retries."""
    try:
        response = http_client().post(url, json=json, headers=headers)
    except httpx.TimeoutException as exc:
        raise DeliveryError(f"{provider}: timed out ({type(exc).__name__})", retryable=True) from None
    except httpx.TransportError as exc:
        raise DeliveryError(f"{provider}: connection error ({type(exc).__name__}: {exc})", retryable=True) from None
    status = response.status_code
    if status >= 400:
        retry_after = None
        if status == 429:
            try:
                retry_after = float(response.headers.get("Retry-After", ""))
            except ValueError:
                retry_after = None
        raise DeliveryError(
            f"{provider} answered HTTP {status}: {_error_text(response)}",
            retryable=status >= 500 or status == 429, http_status=status, retry_after=retry_after,
        )
    try:
        body = response.json()
    except ValueError:
        body = {}
    return (body if isinstance(body, dict) else {}), status


def monotonic_ms(start: float) -> int:
    return int((time.monotonic() - start) * 1000)
