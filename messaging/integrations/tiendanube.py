"""Tienda Nube connect: install link, code exchange, webhook registration, app webhooks.

OAuth per Tienda Nube's public docs: the merchant authorizes at
`{TIENDANUBE_AUTH_BASE}/apps/{app_id}/authorize`, comes back with a `code` valid 5 minutes,
which `POST {TIENDANUBE_AUTH_BASE}/apps/authorize/token` exchanges for a non-expiring access
token plus `user_id` (the store id). Webhooks are signed with `x-linkedstore-hmac-sha256`
(hex HMAC-SHA256 of the raw body with the app secret).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from dataclasses import dataclass, field
from urllib.parse import urlencode

import httpx
from django.conf import settings
from django.urls import reverse

from messaging.integrations.errors import ConnectError, NotConfigured
from messaging.integrations.tenant_lookup import tenants_with_credential_value
from vault import credentials as vault

logger = logging.getLogger(__name__)

CATEGORY = "tiendanube"
TIMEOUT = httpx.Timeout(10.0, connect=5.0)
# The app-lifecycle events the store must send us; the privacy webhooks (store/redact,
# customers/redact, customers/data_request) are set once in the partner portal, not per store.
APP_WEBHOOK_EVENTS = ("app/uninstalled", "app/suspended", "app/resumed")


def _app_credentials() -> tuple[str, str]:
    app_id, secret = settings.TIENDANUBE_APP_ID, settings.TIENDANUBE_CLIENT_SECRET
    if not app_id or not secret:
        raise NotConfigured("Tienda Nube app is not configured (TIENDANUBE_APP_ID and TIENDANUBE_CLIENT_SECRET).")
    return app_id, secret


def install_url(*, state: str = "") -> str:
    app_id, _ = _app_credentials()
    base = f"{settings.TIENDANUBE_AUTH_BASE.rstrip('/')}/apps/{app_id}/authorize"
    return f"{base}?{urlencode({'state': state})}" if state else base


def webhook_url() -> str:
    return settings.PUBLIC_BASE_URL + reverse("tiendanube-webhook")


def _api_headers(access_token: str) -> dict[str, str]:
    # Tienda Nube's API takes the token in an `Authentication` header (sic) and requires a
    # User-Agent naming the app and a contact.
    return {"Authentication": f"bearer {access_token}", "User-Agent": settings.TIENDANUBE_USER_AGENT}


def exchange_code(code: str) -> dict:
    """The token endpoint's JSON ({access_token, token_type, scope, user_id}) or ConnectError."""
    app_id, secret = _app_credentials()
    if not code or not str(code).strip():
        raise ConnectError("Tienda Nube connect needs the `code` from the authorization redirect.", code="missing_code")
    url = f"{settings.TIENDANUBE_AUTH_BASE.rstrip('/')}/apps/authorize/token"
    payload = {"client_id": app_id, "client_secret": secret, "grant_type": "authorization_code", "code": code}
    try:
        response = httpx.post(url, json=payload, timeout=TIMEOUT)
    except httpx.HTTPError as exc:
        raise ConnectError(f"Tienda Nube could not be reached ({type(exc).__name__}); try again.",
                           code="provider_unreachable", status=502) from None
    try:
        body = response.json()
    except ValueError:
        body = {}
    if response.status_code >= 400 or "error" in body or not body.get("access_token"):
        description = body.get("error_description") or body.get("error") or f"HTTP {response.status_code}"
        raise ConnectError(
            "Tienda Nube rejected the authorization code (codes expire after 5 minutes and work "
            f"once; start the install again): {description}",
            code="invalid_code",
        )
    if not body.get("user_id"):
        raise ConnectError("Tienda Nube's token response carried no user_id (store id).", code="invalid_response")
    return body


def register_app_webhooks(*, store_id: str, access_token: str) -> "WebhookRegistration":
    """Create the app-lifecycle webhooks the store does not have yet (idempotent)."""
    base = f"{settings.TIENDANUBE_API_BASE.rstrip('/')}/{store_id}/webhooks"
    target = webhook_url()
    result = WebhookRegistration()
    with httpx.Client(timeout=TIMEOUT, headers=_api_headers(access_token)) as client:
        try:
            listing = client.get(base)
            existing = {(hook.get("event"), hook.get("url")) for hook in listing.json()} if listing.is_success else set()
        except (httpx.HTTPError, ValueError, AttributeError):
            existing = set()
        for event in APP_WEBHOOK_EVENTS:
            if (event, target) in existing:
                result.already.append(event)
                continue
            try:
                response = client.post(base, json={"event": event, "url": target})
            except httpx.HTTPError as exc:
                result.failed[event] = type(exc).__name__
                continue
            if response.is_success:
                result.registered.append(event)
            else:
                result.failed[event] = f"HTTP {response.status_code}: {response.text[:200]}"
    if result.failed:
        logger.warning("Tienda Nube store %s: webhooks not registered: %s", store_id, sorted(result.failed))
    return result


@dataclass
class WebhookRegistration:
    registered: list[str] = field(default_factory=list)
    already: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)


def connect_store(*, tenant_id: int, code: str) -> dict:
    """Exchange the code, store ACCESS_TOKEN and STORE_ID for the tenant, register webhooks."""
    body = exchange_code(code)
    store_id = str(body["user_id"])
    others = [t for t in tenants_with_credential_value(CATEGORY, "STORE_ID", store_id) if t != tenant_id]
    if others:
        raise ConnectError(
            f"Tienda Nube store {store_id} is already connected to another tenant; disconnect it there first.",
            code="store_taken", status=409,
        )
    vault.set_tenant_credential(tenant_id, CATEGORY, "ACCESS_TOKEN", body["access_token"])
    vault.set_tenant_credential(tenant_id, CATEGORY, "STORE_ID", store_id)
    hooks = register_app_webhooks(store_id=store_id, access_token=body["access_token"])
    logger.info("Tienda Nube store %s connected to tenant %s", store_id, tenant_id)
    return {
        "store_id": store_id,
        "scope": body.get("scope", ""),
        "webhooks": {"registered": hooks.registered, "already": hooks.already, "failed": hooks.failed},
    }


# --- Webhooks ------------------------------------------------------------------------------


def signature_is_valid(raw_body: bytes, signature: str | None) -> bool:
    _, secret = _app_credentials()
    if not signature:
        return False
    expected = hmac.new(secret.encode(), raw_body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, signature.strip().lower())


def handle_webhook(payload: dict, *, topic: str | None = None) -> dict:
    """Apply one verified webhook. Returns what was done (for the response and the log)."""
    from messaging.integrations import privacy

    event = topic or payload.get("event") or ""
    store_id = payload.get("store_id")
    if store_id in (None, ""):
        return {"ignored": "no store_id in the payload"}
    tenants = tenants_with_credential_value(CATEGORY, "STORE_ID", str(store_id))
    if not tenants:
        logger.warning("Tienda Nube webhook %s for unknown store %s ignored", event, store_id)
        return {"ignored": f"store {store_id} is not connected"}
    done = {}
    for tenant_id in tenants:
        if event in ("app/uninstalled", "app/suspended"):
            done[tenant_id] = f"disabled {vault.disable_category(tenant_id, CATEGORY)} credentials"
        elif event == "app/resumed":
            done[tenant_id] = f"enabled {vault.enable_category(tenant_id, CATEGORY)} credentials"
        elif event == "store/redact":
            done[tenant_id] = privacy.redact_store(tenant_id=tenant_id)
        elif event == "customers/redact":
            done[tenant_id] = privacy.redact_customer(tenant_id=tenant_id, customer=payload.get("customer") or {})
        elif event == "customers/data_request":
            done[tenant_id] = privacy.export_customer(
                tenant_id=tenant_id, customer=payload.get("customer") or {},
                request_id=(payload.get("data_request") or {}).get("id"),
            )
        else:
            done[tenant_id] = "ignored"
        logger.info("Tienda Nube webhook %s for store %s, tenant %s: %s", event, store_id, tenant_id, done[tenant_id])
    return {"event": event, "tenants": len(done)}
