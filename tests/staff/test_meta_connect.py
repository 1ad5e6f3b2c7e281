"""Meta connect ("the diplomat") and the daily token job, against Graph-shaped respx fakes."""

from __future__ import annotations

import json
import logging
from datetime import timedelta

import httpx
import pytest
import respx
from django.utils import timezone

from messaging.integrations import status
from messaging.integrations.tasks import refresh_expiring_tokens
from messaging.models import ChannelBinding
from tests.messaging import factories
from vault.credentials import get_tenant_credential_sync, set_tenant_credential
from vault.models import Credential

pytestmark = pytest.mark.django_db

GRAPH = "https://graph.facebook.test/v23.0"
LONG_TOKEN = "EAAGlongLivedUserToken0001"
PAGE_TOKEN = "EAAGpageToken0001"


@pytest.fixture(autouse=True)
def _meta_settings(settings):
    settings.META_APP_ID = "1122"
    settings.META_APP_SECRET = "meta-app-secret"
    settings.META_GRAPH_BASE = GRAPH


def graph_error(message, code, subcode=None, status=400, type_="OAuthException"):
    error = {"message": message, "type": type_, "code": code, "fbtrace_id": "AbCdEf"}
    if subcode:
        error["error_subcode"] = subcode
    return httpx.Response(status, json={"error": error})


def mock_happy_graph(router, *, granular=True):
    def access_token(request):
        params = request.url.params
        if params.get("grant_type") == "fb_exchange_token":
            return httpx.Response(200, json={"access_token": LONG_TOKEN, "token_type": "bearer", "expires_in": 5183944})
        return httpx.Response(200, json={"access_token": "EAAGshort", "token_type": "bearer", "expires_in": 5400})

    router.get(f"{GRAPH}/oauth/access_token").mock(side_effect=access_token)
    router.get(f"{GRAPH}/me/accounts").mock(return_value=httpx.Response(200, json={
        "data": [
            {"id": "1770001", "name": "Pointe Coach", "access_token": PAGE_TOKEN, "tasks": ["MESSAGING"],
             "instagram_business_account": {"id": "17841400000000001", "username": "pointecoach"}},
            {"id": "1770002", "name": "Otra página", "access_token": "EAAGpageToken0002", "tasks": ["ANALYZE"]},
        ],
        "paging": {"cursors": {"before": "b", "after": "a"}},
    }))
    scopes = [{"scope": "pages_messaging", "target_ids": ["1770001"]}]
    if granular:
        scopes.append({"scope": "whatsapp_business_management", "target_ids": ["102290129340398"]})
    router.get(f"{GRAPH}/debug_token").mock(return_value=httpx.Response(200, json={"data": {
        "app_id": "1122", "type": "USER", "is_valid": True, "expires_at": 1769000000, "granular_scopes": scopes,
        "scopes": ["pages_show_list", "pages_messaging", "whatsapp_business_management"],
    }}))
    router.get(f"{GRAPH}/102290129340398/phone_numbers").mock(return_value=httpx.Response(200, json={"data": [
        {"verified_name": "Pointe Coach", "display_phone_number": "+54 9 11 5000-0000", "id": "106540352242922",
         "quality_rating": "GREEN"},
    ]}))
    router.post(f"{GRAPH}/102290129340398/subscribed_apps").mock(return_value=httpx.Response(200, json={"success": True}))
    return router.post(f"{GRAPH}/1770001/subscribed_apps").mock(return_value=httpx.Response(200, json={"success": True}))


@respx.mock
def test_connect_stores_tokens_subscribes_the_page_and_binds_channels(api_a, tenant_a):
    from tests.agents.factories import agent

    ours = agent(tenant_a)
    subscribe = mock_happy_graph(respx)
    response = api_a.post("/api/v1/integrations/meta/connect", {
        "code": "AQD-code", "redirect_uri": "https://platform.example/admin/integrations/meta/", "page_ids": ["1770001"],
        "agent": ours.pk,
    }, format="json")
    assert response.status_code == 200, response.json()
    body = response.json()
    assert [p["id"] for p in body["pages"]] == ["1770001"] and body["pages"][0]["subscription_error"] == ""
    assert subscribe.calls.last.request.url.params["access_token"] == PAGE_TOKEN
    assert LONG_TOKEN not in json.dumps(body) and PAGE_TOKEN not in json.dumps(body)
    user_token = Credential.objects.for_tenant(tenant_a.pk).get(category="meta", name="USER_TOKEN")
    assert user_token.value == LONG_TOKEN
    assert timedelta(days=59) < user_token.expires_at - timezone.now() < timedelta(days=61)
    assert get_tenant_credential_sync(tenant_a.pk, "meta", "PAGE_TOKEN") == PAGE_TOKEN
    # Keyed by page id and by the page's Instagram business account id (replies on Instagram use it).
    assert json.loads(get_tenant_credential_sync(tenant_a.pk, "meta", "PAGE_TOKENS")) == {
        "1770001": PAGE_TOKEN, "17841400000000001": PAGE_TOKEN}
    assert get_tenant_credential_sync(tenant_a.pk, "whatsapp_cloud", "PHONE_NUMBER_ID") == "106540352242922"
    bindings = set(ChannelBinding.objects.for_tenant(tenant_a.pk).values_list("provider", "channel_source", "external_id"))
    assert bindings == {("meta_direct", "facebook", "1770001"), ("meta_direct", "instagram", "17841400000000001"),
                        ("meta_direct", "whatsapp", "106540352242922")}
    assert set(ChannelBinding.objects.for_tenant(tenant_a.pk).values_list("agent_id", flat=True)) == {ours.pk}
    exchange = [c.request.url.params for c in respx.calls if c.request.url.path.endswith("oauth/access_token")]
    assert exchange[0]["client_id"] == "1122" and exchange[0]["client_secret"] == "meta-app-secret"


@respx.mock
def test_expired_code_is_a_400_naming_the_problem(api_a, tenant_a):
    respx.get(f"{GRAPH}/oauth/access_token").mock(
        return_value=graph_error("This authorization code has expired.", 100, 36007)
    )
    response = api_a.post("/api/v1/integrations/meta/connect",
                          {"code": "old", "redirect_uri": "https://platform.example/cb"}, format="json")
    assert response.status_code == 400
    assert response.json()["code"] == "invalid_code"
    assert "This authorization code has expired." in response.json()["detail"]
    assert not Credential.objects.for_tenant(tenant_a.pk).exists()


@respx.mock
def test_missing_page_permission_is_named(api_a, tenant_a):
    mock_happy_graph(respx)
    respx.get(f"{GRAPH}/me/accounts").mock(return_value=graph_error(
        "(#10) This endpoint requires the 'pages_show_list' permission.", 10, type_="OAuthException", status=403,
    ))
    response = api_a.post("/api/v1/integrations/meta/connect",
                          {"code": "c", "redirect_uri": "https://platform.example/cb"}, format="json")
    assert response.status_code == 400
    body = response.json()
    assert body["code"] == "missing_permission" and "pages_show_list" in body["detail"]


@respx.mock
def test_without_whatsapp_permission_pages_still_connect(api_a, tenant_a):
    mock_happy_graph(respx, granular=False)
    response = api_a.post("/api/v1/integrations/meta/connect",
                          {"code": "c", "redirect_uri": "https://platform.example/cb", "page_ids": ["1770001"]},
                          format="json")
    assert response.status_code == 200
    assert "whatsapp_business_management not granted" in response.json()["whatsapp"]["problem"]
    assert not ChannelBinding.objects.for_tenant(tenant_a.pk).filter(channel_source="whatsapp").exists()


@respx.mock
def test_page_of_another_tenant_is_not_taken(api_a, tenant_a, tenant_b):
    mock_happy_graph(respx)
    factories.binding(tenant_b, provider="meta_direct", channel_source="facebook", external_id="1770001")
    body = api_a.post("/api/v1/integrations/meta/connect",
                      {"code": "c", "redirect_uri": "https://platform.example/cb", "page_ids": ["1770001"]},
                      format="json").json()
    assert any("another tenant" in b.get("error", "") for b in body["bindings"])
    assert ChannelBinding.dangerously_unscoped.get(external_id="1770001").tenant_id == tenant_b.pk


def test_missing_fields_are_named(api_a):
    response = api_a.post("/api/v1/integrations/meta/connect", {"code": ""}, format="json")
    assert response.status_code == 400 and "redirect_uri" in response.json()["detail"]


@respx.mock
def test_daily_job_refreshes_soon_expiring_tokens_and_flags_expired_ones(tenant_a, tenant_b, api_a, caplog):
    soon = timezone.now() + timedelta(days=3)
    set_tenant_credential(tenant_a.pk, "meta", "USER_TOKEN", "EAAGoldButValid", expires_at=soon)
    set_tenant_credential(tenant_b.pk, "meta", "USER_TOKEN", "EAAGalreadyExpired",
                          expires_at=timezone.now() - timedelta(hours=1))
    assert api_a.get("/api/v1/integrations/status").json()["token_expiring_soon"] is True
    exchange = respx.get(f"{GRAPH}/oauth/access_token").mock(return_value=httpx.Response(200, json={
        "access_token": "EAAGfreshToken", "token_type": "bearer", "expires_in": 5183944,
    }))
    with caplog.at_level(logging.DEBUG):
        outcome = refresh_expiring_tokens()
    assert outcome == {"flagged": 2, "refreshed": 1, "failed": 1}
    assert exchange.calls.last.request.url.params["fb_exchange_token"] == "EAAGoldButValid"
    assert get_tenant_credential_sync(tenant_a.pk, "meta", "USER_TOKEN") == "EAAGfreshToken"
    assert status.banners([tenant_a.pk]) == []
    assert "expired" in status.banners([tenant_b.pk])[0]
    logged = caplog.text
    assert "EAAG" not in logged  # never a token in the logs
    assert api_a.get("/api/v1/integrations/status").json()["token_expiring_soon"] is False


def test_admin_index_shows_the_expiry_banner(client, user_a, tenant_a):
    set_tenant_credential(tenant_a.pk, "meta", "USER_TOKEN", "EAAGx", expires_at=timezone.now() + timedelta(days=2))
    client.force_login(user_a)
    page = client.get("/admin/").content.decode()
    assert "Meta token USER_TOKEN expires" in page
    assert "/admin/live/" in page and "/admin/dashboard/" in page


def test_admin_button_goes_to_metas_dialog_with_a_signed_state(client, user_a):
    client.force_login(user_a)
    response = client.get("/admin/integrations/meta/")
    assert response.status_code == 302
    location = response["Location"]
    assert location.startswith("https://www.facebook.com/") and "/dialog/oauth?" in location
    assert "client_id=1122" in location and "state=" in location and "whatsapp_business_management" in location
    assert "meta-app-secret" not in location


@respx.mock
def test_admin_callback_connects_every_granted_page(client, user_a, tenant_a):
    mock_happy_graph(respx)
    respx.post(f"{GRAPH}/1770002/subscribed_apps").mock(return_value=httpx.Response(200, json={"success": True}))
    client.force_login(user_a)
    start = client.get("/admin/integrations/meta/")["Location"]
    state = dict(part.split("=", 1) for part in start.split("?", 1)[1].split("&"))["state"]
    response = client.get(f"/admin/integrations/meta/callback/?code=AQD&state={state}")
    assert response.status_code == 200
    assert b"Meta connected" in response.content and LONG_TOKEN.encode() not in response.content
    assert ChannelBinding.objects.for_tenant(tenant_a.pk).filter(channel_source="facebook").count() == 2


def test_admin_callback_without_our_state_is_refused(client, user_a):
    client.force_login(user_a)
    response = client.get("/admin/integrations/meta/callback/?code=AQD")
    assert response.status_code == 400 and b"without its state" in response.content
    response = client.get("/admin/integrations/meta/callback/?error=access_denied&error_description=Permissions+error")
    assert response.status_code == 400 and b"Permissions error" in response.content


@respx.mock
def test_another_tenants_agent_cannot_be_bound(api_a, tenant_b):
    from tests.agents.factories import agent

    theirs = agent(tenant_b)
    response = api_a.post("/api/v1/integrations/meta/connect", {
        "code": "c", "redirect_uri": "https://platform.example/cb", "agent": theirs.pk}, format="json")
    assert response.status_code == 400 and "agent" in response.json()["detail"]
    assert not respx.calls  # refused before Meta was called
