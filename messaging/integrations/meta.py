"""Meta connect, "the diplomat": one OAuth code in, pages/Instagram/WhatsApp connected out.

code → user token (`oauth/access_token`) → long-lived user token (`fb_exchange_token`, about
60 days) → pages with their page tokens and Instagram business accounts (`/me/accounts`) →
WhatsApp numbers of the business accounts the user granted (`debug_token` granular scopes,
`/{waba-id}/phone_numbers`) → each chosen page subscribed to the app (`/{page-id}/subscribed_apps`)
→ tokens in the vault (with expiry) and ChannelBindings. App id and secret come from settings.
"""

from __future__ import annotations

import json
import logging
from datetime import timedelta

import httpx
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from messaging.integrations.errors import ConnectError, NotConfigured
from messaging.models import ChannelBinding, ChannelSource, Provider
from tenants.scoping import tenant_scope
from vault import credentials as vault

logger = logging.getLogger(__name__)

TIMEOUT = httpx.Timeout(15.0, connect=5.0)
PAGE_FIELDS = "id,name,access_token,tasks,instagram_business_account{id,username}"
# Everything the Meta webhook parser reads (messaging/webhooks/meta.py).
PAGE_SUBSCRIBED_FIELDS = ("messages,messaging_postbacks,message_echoes,message_deliveries,message_reads,"
                          "message_reactions,message_edits,messaging_referrals")
# Graph error codes: 10 and 200-299 are permission errors; 190 an invalid or expired token.
PERMISSION_CODES = {10} | set(range(200, 300))


class GraphError(ConnectError):
    def __init__(self, step: str, error: dict, http_status: int):
        self.graph = error
        self.step = step
        message = error.get("message") or f"HTTP {http_status}"
        graph_code = error.get("code")
        if step == "code exchange":
            text, code = f"Meta rejected the authorization code ({message}); codes expire after a few minutes and work once: connect again.", "invalid_code"
        elif graph_code in PERMISSION_CODES:
            text, code = f"Meta refused {step}: missing permission ({message}).", "missing_permission"
        elif graph_code == 190:
            text, code = f"Meta refused {step}: the token is invalid or expired ({message}); connect again.", "invalid_token"
        else:
            text, code = f"Meta refused {step}: {message}", "graph_error"
        super().__init__(text, code=code, status=400 if http_status < 500 else 502)


def _app() -> tuple[str, str]:
    if not settings.META_APP_ID or not settings.META_APP_SECRET:
        raise NotConfigured("Meta app is not configured (META_APP_ID and META_APP_SECRET).")
    return settings.META_APP_ID, settings.META_APP_SECRET


SCOPES = (
    "pages_show_list", "pages_messaging", "pages_manage_metadata", "instagram_basic", "instagram_manage_messages",
    "business_management", "whatsapp_business_management", "whatsapp_business_messaging",
)


def dialog_url(*, redirect_uri: str, state: str) -> str:
    """Meta's login dialog for the admin button (the Graph version of META_GRAPH_VERSION)."""
    from urllib.parse import urlencode

    app_id, _ = _app()
    query = urlencode({"client_id": app_id, "redirect_uri": redirect_uri, "state": state,
                       "scope": ",".join(SCOPES), "response_type": "code"})
    return f"https://www.facebook.com/{settings.META_GRAPH_VERSION}/dialog/oauth?{query}"


def graph(method: str, path: str, *, step: str, params: dict) -> dict:
    """One Graph call; a Graph error becomes GraphError naming the step (tokens never logged)."""
    url = f"{settings.META_GRAPH_BASE}/{path.lstrip('/')}"
    try:
        response = httpx.request(method, url, params=params, timeout=TIMEOUT)
    except httpx.HTTPError as exc:
        raise ConnectError(f"Meta could not be reached during {step} ({type(exc).__name__}); try again.",
                           code="provider_unreachable", status=502) from None
    try:
        body = response.json()
    except ValueError:
        body = {}
    if response.status_code >= 400 or (isinstance(body, dict) and "error" in body):
        error = body.get("error") if isinstance(body, dict) and isinstance(body.get("error"), dict) else {}
        raise GraphError(step, error, response.status_code)
    return body if isinstance(body, dict) else {}


def expiry_of(body: dict):
    seconds = body.get("expires_in")
    return timezone.now() + timedelta(seconds=int(seconds)) if seconds else None


def exchange_code(code: str, redirect_uri: str) -> dict:
    app_id, secret = _app()
    return graph("GET", "oauth/access_token", step="code exchange", params={
        "client_id": app_id, "client_secret": secret, "redirect_uri": redirect_uri, "code": code,
    })


def long_lived_token(user_token: str) -> dict:
    """Also the refresh: a still-valid long-lived token exchanges for a fresh ~60-day one."""
    app_id, secret = _app()
    return graph("GET", "oauth/access_token", step="long-lived token exchange", params={
        "grant_type": "fb_exchange_token", "client_id": app_id, "client_secret": secret,
        "fb_exchange_token": user_token,
    })


def list_pages(user_token: str) -> list[dict]:
    pages, params, path = [], {"access_token": user_token, "fields": PAGE_FIELDS, "limit": 100}, "me/accounts"
    for _ in range(20):  # Graph paginates; 20 pages of 100 is far beyond any shop
        body = graph("GET", path, step="listing your pages (pages_show_list)", params=params)
        pages += body.get("data") or []
        after = ((body.get("paging") or {}).get("cursors") or {}).get("after")
        if not after or not (body.get("paging") or {}).get("next"):
            break
        params = {**params, "after": after}
    return pages


def whatsapp_numbers(user_token: str) -> tuple[list[dict], str]:
    """([{waba_id, id, display_phone_number, verified_name}], problem). Missing permission is
    not fatal: pages still connect, and the problem is reported."""
    app_id, secret = _app()
    try:
        info = graph("GET", "debug_token", step="reading the granted permissions", params={
            "input_token": user_token, "access_token": f"{app_id}|{secret}",
        }).get("data") or {}
        waba_ids = sorted({
            target for scope in info.get("granular_scopes") or []
            if scope.get("scope") == "whatsapp_business_management" for target in scope.get("target_ids") or []
        })
        if not waba_ids:
            return [], "WhatsApp: permission whatsapp_business_management not granted (no WhatsApp numbers connected)."
        numbers = []
        for waba_id in waba_ids:
            body = graph("GET", f"{waba_id}/phone_numbers", step=f"listing WhatsApp numbers of {waba_id}",
                         params={"access_token": user_token})
            numbers += [{**number, "waba_id": waba_id} for number in body.get("data") or []]
            graph("POST", f"{waba_id}/subscribed_apps", step=f"subscribing WhatsApp account {waba_id}",
                  params={"access_token": user_token})
        return numbers, ""
    except GraphError as exc:
        return [], f"WhatsApp: {exc}"


def subscribe_page(page: dict) -> str:
    """'' when subscribed, else the problem."""
    try:
        body = graph("POST", f"{page['id']}/subscribed_apps", step=f"subscribing page {page.get('name') or page['id']}",
                     params={"subscribed_fields": PAGE_SUBSCRIBED_FIELDS, "access_token": page.get("access_token", "")})
    except GraphError as exc:
        return str(exc)
    return "" if body.get("success") else "Meta did not confirm the subscription."


def _bind(tenant_id: int, *, channel_source: str, external_id: str, agent_id) -> dict:
    clash = ChannelBinding.dangerously_unscoped.filter(provider=Provider.META_DIRECT, external_id=external_id)
    if clash.exclude(tenant_id=tenant_id).exists():
        return {"channel_source": channel_source, "external_id": external_id,
                "error": f"{channel_source} {external_id} is already connected to another tenant."}
    with tenant_scope(tenant_id):
        binding, created = ChannelBinding.objects.get_or_create(
            provider=Provider.META_DIRECT, external_id=external_id,
            defaults={"channel_source": channel_source, "agent_id": agent_id, "tenant_id": tenant_id},
        )
        if not created and (not binding.is_active or (agent_id and binding.agent_id != agent_id)):
            binding.is_active = True
            binding.agent_id = agent_id or binding.agent_id
            binding.save(update_fields=["is_active", "agent_id"])
    return {"id": binding.pk, "channel_source": channel_source, "external_id": external_id, "created": created}


def connect(*, tenant_id: int, code: str, redirect_uri: str, page_ids: list[str] | None = None, agent=None) -> dict:
    short = exchange_code(code, redirect_uri)
    long = long_lived_token(short["access_token"])
    user_token, expires_at = long["access_token"], expiry_of(long)
    pages = list_pages(user_token)
    chosen = [p for p in pages if page_ids is None or not page_ids or p["id"] in set(page_ids)]
    unknown = sorted(set(page_ids or []) - {p["id"] for p in pages})
    if unknown:
        raise ConnectError(f"Pages {', '.join(unknown)} are not among the pages this Meta user manages.",
                           code="unknown_page")
    numbers, whatsapp_problem = whatsapp_numbers(user_token)
    page_results = [{"id": p["id"], "name": p.get("name", ""),
                     "instagram_business_account": (p.get("instagram_business_account") or {}).get("id"),
                     "subscription_error": subscribe_page(p)} for p in chosen]
    page_tokens = {}
    for page in chosen:
        if page.get("access_token"):
            page_tokens[page["id"]] = page["access_token"]
            instagram_id = (page.get("instagram_business_account") or {}).get("id")
            if instagram_id:  # Instagram replies go out with the linked page's token
                page_tokens[instagram_id] = page["access_token"]
    with transaction.atomic():
        vault.set_tenant_credential(tenant_id, "meta", "USER_TOKEN", user_token, expires_at=expires_at)
        if page_tokens:
            # Page tokens obtained from a long-lived user token do not expire.
            vault.set_tenant_credential(tenant_id, "meta", "PAGE_TOKEN", next(iter(page_tokens.values())))
            vault.set_tenant_credential(tenant_id, "meta", "PAGE_TOKENS", json.dumps(page_tokens))
        if numbers:
            vault.set_tenant_credential(tenant_id, "whatsapp_cloud", "ACCESS_TOKEN", user_token, expires_at=expires_at)
            vault.set_tenant_credential(tenant_id, "whatsapp_cloud", "PHONE_NUMBER_ID", numbers[0]["id"])
        bindings = []
        for page in page_results:
            bindings.append(_bind(tenant_id, channel_source=ChannelSource.FACEBOOK, external_id=page["id"], agent_id=agent))
            if page["instagram_business_account"]:
                bindings.append(_bind(tenant_id, channel_source=ChannelSource.INSTAGRAM,
                                      external_id=page["instagram_business_account"], agent_id=agent))
        for number in numbers:
            bindings.append(_bind(tenant_id, channel_source=ChannelSource.WHATSAPP, external_id=number["id"], agent_id=agent))
    logger.info("Meta connected for tenant %s: %d page(s), %d WhatsApp number(s)", tenant_id, len(chosen), len(numbers))
    return {
        "user_token_expires_at": expires_at,
        "pages": page_results,
        "whatsapp": {"numbers": [{k: n.get(k) for k in ("id", "display_phone_number", "verified_name", "waba_id")}
                                 for n in numbers], "problem": whatsapp_problem},
        "bindings": bindings,
    }


# --- bindings made by hand (API, admin) --------------------------------------------------------

def verify_ownership(tenant_id: int, *, channel_source: str, external_id: str) -> None:
    """Raise ConnectError unless the tenant's own Meta credentials control this account.

    Meta routes every delivery to the one app-level webhook, and a binding is what sends it to a
    tenant: whoever binds a page id first receives that page's customers. Page and Instagram ids
    are public, so a binding typed in by hand must prove itself the way Connect with Meta does: the
    tenant's page token must be that page's (or that Instagram account's page's), and its WhatsApp
    token must reach that phone number id."""
    if channel_source == ChannelSource.WHATSAPP:
        token = vault.get_optional_credential(tenant_id, "whatsapp_cloud", "ACCESS_TOKEN")
        if not token:
            raise ConnectError("Store this tenant's whatsapp_cloud ACCESS_TOKEN first (or use Connect with Meta): "
                               "it proves the WhatsApp number is yours.", code="ownership_unproven")
        body = graph("GET", external_id, step=f"reading WhatsApp number {external_id} with your access token",
                     params={"access_token": token, "fields": "id,display_phone_number"})
        if str(body.get("id", "")) != external_id:
            raise ConnectError(f"Meta did not confirm WhatsApp number {external_id} for your access token.",
                               code="ownership_unproven")
        return
    from messaging.providers.http import page_token_for

    token = page_token_for(tenant_id, external_id)
    if not token:
        raise ConnectError("Use Connect with Meta (or store the meta PAGE_TOKEN of this page): it proves the "
                           f"{channel_source} account is yours.", code="ownership_unproven")
    fields = "id,instagram_business_account" if channel_source == ChannelSource.INSTAGRAM else "id"
    body = graph("GET", "me", step="reading the page of your page token", params={"access_token": token,
                                                                               "fields": fields})
    owned = (str((body.get("instagram_business_account") or {}).get("id", ""))
             if channel_source == ChannelSource.INSTAGRAM else str(body.get("id", "")))
    if owned != external_id:
        raise ConnectError(f"Your page token is not for {channel_source} account {external_id}; use Connect with "
                           "Meta to bind the pages you manage.", code="ownership_unproven")
