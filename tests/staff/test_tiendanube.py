"""Tienda Nube connect and webhooks, against respx fakes shaped like Tienda Nube's public docs."""

from __future__ import annotations

import hashlib
import hmac
import json

import httpx
import pytest
import respx
from django.core.files.storage import default_storage

from messaging.models import ChatConversation
from tests.messaging import factories
from vault.credentials import check_credentials, get_tenant_credential_sync
from vault.models import Credential

pytestmark = pytest.mark.django_db

AUTH = "https://auth.tiendanube.test"
API = "https://api.tiendanube.test/v1"
SECRET = "tn-client-secret"


@pytest.fixture(autouse=True)
def _tiendanube_settings(settings, tmp_path):
    settings.TIENDANUBE_APP_ID = "4321"
    settings.TIENDANUBE_CLIENT_SECRET = SECRET
    settings.TIENDANUBE_AUTH_BASE = AUTH
    settings.TIENDANUBE_API_BASE = API
    settings.PUBLIC_BASE_URL = "https://platform.example"
    settings.MEDIA_ROOT = str(tmp_path)


def token_ok(store_id=1234567):
    return httpx.Response(200, json={
        "access_token": "61181d08ff5ab2e5f7f0ac5dc63ef9e4d8a5e6e0", "token_type": "bearer",
        "scope": "read_products,read_orders,read_customers", "user_id": store_id,
    })


def mock_webhooks(router, existing=()):
    router.get(f"{API}/1234567/webhooks").mock(return_value=httpx.Response(200, json=list(existing)))
    return router.post(f"{API}/1234567/webhooks").mock(side_effect=lambda request: httpx.Response(201, json={
        "id": 8901, **json.loads(request.content), "created_at": "2026-11-25T02:00:00-03:00",
        "updated_at": "2026-11-25T02:00:00-03:00",
    }))


def test_install_link_goes_to_the_apps_authorize_page(client, user_a):
    client.force_login(user_a)
    response = client.get("/admin/integrations/tiendanube/install/")
    assert response.status_code == 302
    assert response["Location"].startswith(f"{AUTH}/apps/4321/authorize?state=")


@respx.mock
def test_callback_stores_token_and_store_id_and_registers_app_webhooks(client, user_a, tenant_a):
    token = respx.post(f"{AUTH}/apps/authorize/token").mock(return_value=token_ok())
    created = mock_webhooks(respx, existing=[{"id": 1, "event": "app/uninstalled",
                                              "url": "https://platform.example/webhooks/tiendanube/"}])
    client.force_login(user_a)
    response = client.get("/admin/integrations/tiendanube/callback/?code=xyz")
    assert response.status_code == 200, response.content
    sent = json.loads(token.calls.last.request.content)
    assert sent == {"client_id": "4321", "client_secret": SECRET, "grant_type": "authorization_code", "code": "xyz"}
    assert get_tenant_credential_sync(tenant_a.pk, "tiendanube", "STORE_ID") == "1234567"
    assert get_tenant_credential_sync(tenant_a.pk, "tiendanube", "ACCESS_TOKEN").startswith("61181d08")
    events = sorted(json.loads(call.request.content)["event"] for call in created.calls)
    assert events == ["app/resumed", "app/suspended"]  # app/uninstalled already existed
    headers = created.calls.last.request.headers
    assert headers["Authentication"] == "bearer 61181d08ff5ab2e5f7f0ac5dc63ef9e4d8a5e6e0"
    assert "User-Agent" in headers
    assert b"61181d08" not in response.content


@respx.mock
def test_expired_code_answers_400_naming_the_problem(api_a, tenant_a):
    respx.post(f"{AUTH}/apps/authorize/token").mock(return_value=httpx.Response(200, json={
        "error": "invalid_grant", "error_description": "The authorization code has expired",
    }))
    response = api_a.post("/api/v1/integrations/tiendanube/connect", {"code": "old"}, format="json")
    assert response.status_code == 400
    body = response.json()
    assert body["code"] == "invalid_code" and "expired" in body["detail"] and "5 minutes" in body["detail"]
    assert not check_credentials(tenant_a.pk, "tiendanube")


def test_callback_with_a_foreign_state_is_refused(client, user_a):
    client.force_login(user_a)
    response = client.get("/admin/integrations/tiendanube/callback/?code=xyz&state=forged")
    assert response.status_code == 400
    assert b"install link expired" in response.content


def sign(body: bytes, secret=SECRET) -> str:
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def post_webhook(client, payload, *, signature=None, path="/webhooks/tiendanube/"):
    raw = json.dumps(payload).encode()
    return client.post(path, raw, content_type="application/json",
                       HTTP_X_LINKEDSTORE_HMAC_SHA256=signature if signature is not None else sign(raw))


@pytest.fixture
def connected(tenant_a):
    from vault.credentials import set_tenant_credential

    set_tenant_credential(tenant_a.pk, "tiendanube", "ACCESS_TOKEN", "tn-token-a")
    set_tenant_credential(tenant_a.pk, "tiendanube", "STORE_ID", "1234567")
    return tenant_a


def test_bad_or_missing_signature_is_401(client, connected):
    assert post_webhook(client, {"store_id": 1234567, "event": "app/uninstalled"}, signature="00" * 32).status_code == 401
    assert post_webhook(client, {"store_id": 1234567, "event": "app/uninstalled"}, signature="").status_code == 401
    assert check_credentials(connected.pk, "tiendanube")


def test_uninstall_suspend_resume(client, connected):
    assert post_webhook(client, {"store_id": 1234567, "event": "app/uninstalled", "id": 4321}).status_code == 200
    assert not check_credentials(connected.pk, "tiendanube")
    assert Credential.objects.for_tenant(connected.pk).filter(disabled_at__isnull=False).count() == 2
    post_webhook(client, {"store_id": 1234567, "event": "app/resumed"})
    assert check_credentials(connected.pk, "tiendanube")
    post_webhook(client, {"store_id": 1234567, "event": "app/suspended"})
    assert not check_credentials(connected.pk, "tiendanube")


def test_unknown_store_and_malformed_json(client, connected):
    response = post_webhook(client, {"store_id": 999, "event": "app/uninstalled"})
    assert response.status_code == 200 and "not connected" in response.json()["ignored"]
    raw = b"{not json"
    response = client.post("/webhooks/tiendanube/", raw, content_type="application/json",
                           HTTP_X_LINKEDSTORE_HMAC_SHA256=sign(raw))
    assert response.status_code == 400 and "not valid JSON" in response.json()["detail"]


def test_customers_redact_deletes_that_customers_conversations(client, connected, tenant_b):
    mine = factories.conversation(connected, contact_external_id="5491155550001")
    factories.message(connected, conversation=mine, direction="in", role="customer", text="mi dirección es...")
    other = factories.conversation(connected, contact_external_id="5491100000000")
    elsewhere = factories.conversation(tenant_b, contact_external_id="5491155550001")
    payload = {"store_id": 1234567, "customer": {"id": 1, "email": "ana@example.com", "phone": "+54 9 11 5555-0001",
                                                 "identification": "30111222"}, "orders_to_redact": [10, 11]}
    assert post_webhook(client, payload, path="/webhooks/tiendanube/customers/redact/").status_code == 200
    remaining = set(ChatConversation.dangerously_unscoped.values_list("pk", flat=True))
    assert mine.pk not in remaining and {other.pk, elsewhere.pk} <= remaining


def test_customers_data_request_exports_conversations(client, connected):
    conversation = factories.conversation(connected, contact_external_id="5491155550001", contact_name="Ana")
    factories.message(connected, conversation=conversation, direction="in", role="customer", text="hola", status="received")
    payload = {"store_id": 1234567, "event": "customers/data_request",
               "customer": {"id": 1, "email": "ana@example.com", "phone": "1155550001"},
               "orders_requested": [10], "data_request": {"id": 456}}
    assert post_webhook(client, payload).status_code == 200
    path = f"privacy/tiendanube/tenant-{connected.pk}/data-request-456.json"
    export = json.loads(default_storage.open(path).read())
    assert export["conversations"][0]["messages"][0]["text"] == "hola"


def test_store_redact_deletes_the_tiendanube_credentials(client, connected):
    assert post_webhook(client, {"store_id": 1234567}, path="/webhooks/tiendanube/store/redact/").status_code == 200
    assert not Credential.objects.for_tenant(connected.pk).filter(category="tiendanube").exists()
