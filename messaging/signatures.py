"""Webhook signature checks (constant-time), one function per provider scheme."""

from __future__ import annotations

import hashlib
import hmac
import time

# Chatwoot and YCloud sign a timestamp with the body; older deliveries are replays.
SIGNATURE_TOLERANCE_SECONDS = 300


class SignatureError(Exception):
    """The delivery is not authentic (missing, malformed, wrong or stale signature)."""


def _hmac_hex(secret: str, payload: bytes) -> str:
    return hmac.new(secret.encode(), payload, hashlib.sha256).hexdigest()


def verify_meta(*, app_secret: str, header: str | None, body: bytes) -> None:
    """X-Hub-Signature-256: "sha256=" + HMAC-SHA256(app secret, raw body)."""
    if not app_secret:
        raise SignatureError("META_APP_SECRET is not configured; Meta deliveries cannot be verified")
    if not header:
        raise SignatureError("X-Hub-Signature-256 header missing")
    scheme, _, digest = header.partition("=")
    if scheme != "sha256" or not digest:
        raise SignatureError("X-Hub-Signature-256 must look like sha256=<hex>")
    if not hmac.compare_digest(digest.lower(), _hmac_hex(app_secret, body)):
        raise SignatureError("X-Hub-Signature-256 does not match the body")


def _check_fresh(timestamp: str, now: float | None) -> None:
    try:
        sent = int(timestamp)
    except (TypeError, ValueError):
        raise SignatureError("signature timestamp is not a unix time") from None
    if abs((now if now is not None else time.time()) - sent) > SIGNATURE_TOLERANCE_SECONDS:
        raise SignatureError("signature timestamp is older than 5 minutes (replay?)")


def verify_chatwoot(*, secret: str, signature: str | None, timestamp: str | None, body: bytes, now=None) -> None:
    """X-Chatwoot-Signature: "sha256=" + HMAC-SHA256(secret, "{X-Chatwoot-Timestamp}.{raw body}")."""
    if not signature or not timestamp:
        raise SignatureError("X-Chatwoot-Signature or X-Chatwoot-Timestamp header missing")
    _check_fresh(timestamp, now)
    digest = signature.removeprefix("sha256=")
    expected = _hmac_hex(secret, timestamp.encode() + b"." + body)
    if not hmac.compare_digest(digest.lower(), expected):
        raise SignatureError("X-Chatwoot-Signature does not match the body")


def verify_ycloud(*, secret: str, header: str | None, body: bytes, now=None) -> None:
    """YCloud-Signature: "t=<unix>,s=<hex>" with s = HMAC-SHA256(secret, "{t}.{raw body}")."""
    if not header:
        raise SignatureError("YCloud-Signature header missing")
    parts = dict(part.strip().split("=", 1) for part in header.split(",") if "=" in part)
    timestamp, digest = parts.get("t"), parts.get("s")
    if not timestamp or not digest:
        raise SignatureError("YCloud-Signature must look like t=<unix>,s=<hex>")
    _check_fresh(timestamp, now)
    if not hmac.compare_digest(digest.lower(), _hmac_hex(secret, timestamp.encode() + b"." + body)):
        raise SignatureError("YCloud-Signature does not match the body")


def sign_meta(app_secret: str, body: bytes) -> str:
    """What Meta would send; used by tests, benchmarks and local tools."""
    return "sha256=" + _hmac_hex(app_secret, body)


def sign_chatwoot(secret: str, body: bytes, timestamp: int | None = None) -> tuple[str, str]:
    ts = str(int(timestamp if timestamp is not None else time.time()))
    return "sha256=" + _hmac_hex(secret, ts.encode() + b"." + body), ts


def sign_ycloud(secret: str, body: bytes, timestamp: int | None = None) -> str:
    ts = str(int(timestamp if timestamp is not None else time.time()))
    return f"t={ts},s={_hmac_hex(secret, ts.encode() + b'.' + body)}"
