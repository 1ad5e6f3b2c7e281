"""The provider interface, the registry, and the shared HTTP plumbing (timeouts, error texts)."""

from __future__ import annotations

import logging
import math
import threading
import time
from dataclasses import dataclass

import httpx

from messaging.storable import storable

logger = logging.getLogger(__name__)

# Connect fast or give up; a provider taking longer than this to answer is retried (with its
# idempotency key) rather than holding a worker slot.
HTTP_TIMEOUT = httpx.Timeout(15.0, connect=5.0)


@dataclass
class SendResult:
    provider_message_id: str = ""
    http_status: int | None = None

    def __post_init__(self):
        self.provider_message_id = storable(self.provider_message_id, 200)  # ChatMessage.provider_message_id


class DeliveryError(Exception):
    """A send failed. `retryable`: timeouts, connection errors, 5xx and 429, and a provider's own
    codes for "try again later" (Meta's rate limits come as 400); never other 4xx."""

    def __init__(self, detail: str, *, retryable: bool, http_status: int | None = None, retry_after: float | None = None):
        detail = storable(detail, 2000)
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


def _json(response: httpx.Response):
    try:
        return response.json()
    except ValueError:
        return None


def _error_text(response: httpx.Response) -> str:
    body = _json(response)
    if body is None:
        return response.text[:500] or response.reason_phrase
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict):
            # Graph: "(#100) Invalid parameter" says little; Meta's `error_data.details` (which
            # parameter, what to do) and Messenger's `error_user_msg` say what is wrong.
            data = error.get("error_data")
            extra = [data.get("details") if isinstance(data, dict) else None, error.get("error_user_msg")]
            text = " — ".join(str(part) for part in [error.get("message") or error, *extra] if part)
            return text[:500]
        if error:
            return str(error)[:500]
        if body.get("message"):
            return str(body["message"])[:500]
    return str(body)[:500]


SECRET_HEADERS = {"authorization", "api_access_token", "x-api-key"}


def _without_secrets(text: str, headers: dict) -> str:
    """An error text with the request's credentials masked, as they are and as Python escapes them
    (an exception about a malformed header quotes its value)."""
    for name, value in headers.items():
        if name.lower() in SECRET_HEADERS and value:
            for form in {value, repr(value)[1:-1], repr(value.encode())[2:-1], value.split(" ")[-1]}:
                if len(form) >= 8:
                    text = text.replace(form, "[redacted]")
    return text


def retry_after_seconds(value: str | None) -> float | None:
    """Retry-After in seconds or as an HTTP date; None when absent or not a time."""
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        from email.utils import parsedate_to_datetime

        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        seconds = when.timestamp() - time.time()
    return max(seconds, 0.0) if math.isfinite(seconds) else None


# Graph API error codes that mean "wait and try again", whatever HTTP status they come with
# (Meta's throttling errors come as 400): unknown/temporary service errors (1, 2), app, user and
# page rate limits (4, 17, 32, 613), the WhatsApp account's and the number's throughput (80007,
# 130429), the per-customer pair rate (131056: about one message every 6 s to one person),
# "something went wrong" (131000), service unavailable (131016, 133004). Meta's guide: handle
# errors by `code`, and retry what it marks `is_transient`.
GRAPH_TRANSIENT_CODES = frozenset({1, 2, 4, 17, 32, 613, 80007, 130429, 131000, 131016, 131056, 133004})
GRAPH_PAIR_RATE_LIMIT = 131056
GRAPH_PAIR_RATE_WAIT = 6.0


def graph_transient(body) -> tuple[bool, float | None]:
    """(retry?, wait at least this long) for a Graph API error body."""
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict):
        return False, None
    try:
        code = int(error.get("code"))
    except (TypeError, ValueError):
        code = None
    transient = code in GRAPH_TRANSIENT_CODES or error.get("is_transient") is True
    return transient, GRAPH_PAIR_RATE_WAIT if code == GRAPH_PAIR_RATE_LIMIT else None


def ycloud_transient(body) -> tuple[bool, float | None]:
    """YCloud passes WhatsApp's own error on as `error.whatsappApiError` (its code as text)."""
    error = body.get("error") if isinstance(body, dict) else None
    upstream = error.get("whatsappApiError") if isinstance(error, dict) else None
    return graph_transient({"error": upstream}) if isinstance(upstream, dict) else (False, None)


def post_json(url: str, *, json: dict, headers: dict, provider: str, transient=None) -> tuple[dict, int]:
    """POST and return (json body, status); raise DeliveryError classified for retries.
    `transient(body)` -> (retry?, wait at least) lets a provider retry its own 4xx codes."""
    try:
        response = http_client().post(url, json=json, headers=headers)
    except httpx.TimeoutException as exc:
        raise DeliveryError(f"{provider}: timed out ({type(exc).__name__})", retryable=True) from None
    except httpx.TransportError as exc:
        detail = _without_secrets(f"{provider}: connection error ({type(exc).__name__}: {exc})", headers)
        raise DeliveryError(detail, retryable=True) from None
    status = response.status_code
    if 300 <= status < 400:  # not followed: a redirected POST would not be the message we meant to send
        where = response.headers.get("Location", "").split("?")[0]
        raise DeliveryError(
            f"{provider} answered HTTP {status} (redirect{' to ' + where if where else ''}): nothing was sent; "
            "set the provider's address to where it redirects", retryable=False, http_status=status)
    if status >= 400:
        retry_after = retry_after_seconds(response.headers.get("Retry-After")) if status == 429 else None
        retryable = status >= 500 or status == 429
        if transient is not None:
            said_transient, wait = transient(_json(response))
            retryable = retryable or said_transient
            retry_after = max(retry_after or 0, wait or 0) or None
        raise DeliveryError(
            _without_secrets(f"{provider} answered HTTP {status}: {_error_text(response)}", headers),
            retryable=retryable, http_status=status, retry_after=retry_after,
        )
    try:
        body = response.json()
    except ValueError:
        body = {}
    if isinstance(body, dict) and body.get("error"):  # a 2xx that says it failed (Graph does this)
        retryable, retry_after = transient(body) if transient is not None else (False, None)
        raise DeliveryError(_without_secrets(f"{provider} answered HTTP {status} with an error: "
                                             f"{_error_text(response)}", headers), retryable=retryable,
                            http_status=status, retry_after=retry_after)
    return (body if isinstance(body, dict) else {}), status


def monotonic_ms(start: float) -> int:
    return int((time.monotonic() - start) * 1000)
