"""search_products, check_stock and create_customer against Tienda Nube (respx, documented shapes)."""

from __future__ import annotations

import json

import httpx
import pytest
import respx
from asgiref.sync import async_to_sync

from agents.registry import ToolContext, get_registered_tool
from agents.runtime import run_turn
from tests.agents.tiendanube_payloads import API, STORE_ID, pagination_headers, product
from tests.fakes.openai_server import Reply
from vault.credentials import set_tenant_credential

pytestmark = pytest.mark.django_db

SYNONYMS = {"mallas": "leotardos", "can can": "medias", "zapatillas de punta": "puntas"}


@pytest.fixture(autouse=True)
def tiendanube_settings(settings):
    settings.TIENDANUBE_API_BASE = API
    settings.TIENDANUBE_USER_AGENT = "Platform AI Tests (tests@platform-ai.example)"


@pytest.fixture
def store(tenant_a):
    set_tenant_credential(tenant_a.pk, "tiendanube", "STORE_ID", STORE_ID)
    set_tenant_credential(tenant_a.pk, "tiendanube", "ACCESS_TOKEN", "tn-token-a-secret")
    return tenant_a


def build(name, tenant, **config):
    entry = get_registered_tool(name)
    ctx = ToolContext(tenant_id=tenant.pk, agent_id=1, synonyms=SYNONYMS)
    return entry.factory(ctx, {**entry.default_config, **config}), ctx


@respx.mock
@pytest.mark.parametrize("mode", ["sync", "async"])
def test_search_applies_synonyms_headers_and_trims(store, mode):
    route = respx.get(f"{API}/{STORE_ID}/products").mock(
        return_value=httpx.Response(200, json=[product()], headers=pagination_headers(12))
    )
    tool, _ = build("search_products", store)
    args = {"query": "Mallas negras"}
    raw = tool.invoke(args) if mode == "sync" else async_to_sync(tool.ainvoke)(args)
    request = route.calls.last.request
    assert request.url.params["q"] == "leotardos negras" and request.url.params["per_page"] == "5"
    assert request.headers["Authentication"] == "bearer tn-token-a-secret"
    assert "authorization" not in request.headers
    assert request.headers["User-Agent"] == "Platform AI Tests (tests@platform-ai.example)"
    result = json.loads(raw)
    assert result["total"] == 12 and result["query"] == "leotardos negras"
    item = result["products"][0]
    assert item == {
        "id": 9001, "name": "Leotardo Clásico Negro", "price": "25000.00", "promotional_price": "21000.00",
        "stock": 4, "url": "https://pointecoach.mitiendanube.com/productos/leotardo-clasico-negro/",
        "variants": [
            {"id": 501, "sku": "LEO-NEG-S", "options": "S", "price": "25000.00", "promotional_price": "21000.00", "stock": 4},
            {"id": 502, "sku": "LEO-NEG-M", "options": "M", "price": "25000.00", "promotional_price": "21000.00", "stock": 0},
        ],
    }
    assert "description" not in raw and "images" not in raw


@respx.mock
@pytest.mark.parametrize("status,fragment", [
    (401, "rejected the store's access token"), (402, "payment required"), (404, "Not found"),
    (429, "limiting requests"), (500, "HTTP 500"),
])
def test_search_maps_errors_to_short_messages(store, status, fragment):
    respx.get(f"{API}/{STORE_ID}/products").mock(return_value=httpx.Response(status, json={"code": status}))
    tool, _ = build("search_products", store)
    assert fragment in tool.invoke({"query": "puntas"})


@respx.mock
def test_search_timeout_from_tool_config(store):
    respx.get(f"{API}/{STORE_ID}/products").mock(side_effect=httpx.ReadTimeout("slow"))
    tool, _ = build("search_products", store, timeout=3)
    assert tool.invoke({"query": "puntas"}) == "Tienda Nube did not answer within 3 s."


def test_not_connected_store_is_a_message(tenant_a):
    tool, _ = build("search_products", tenant_a)
    assert tool.invoke({"query": "puntas"}).startswith("Tienda Nube credentials not configured")


@respx.mock
def test_check_stock_by_id_then_by_sku(store):
    by_id = respx.get(f"{API}/{STORE_ID}/products/9001").mock(return_value=httpx.Response(200, json=product()))
    tool, _ = build("check_stock", store)
    assert json.loads(tool.invoke({"product_id_or_sku": "9001"}))["stock"] == 4
    assert by_id.called
    respx.get(f"{API}/{STORE_ID}/products/sku/LEO-NEG-M").mock(return_value=httpx.Response(200, json=product()))
    result = json.loads(tool.invoke({"product_id_or_sku": "LEO-NEG-M"}))
    assert [v["sku"] for v in result["variants"]] == ["LEO-NEG-M"] and result["variants"][0]["stock"] == 0


@respx.mock
def test_check_stock_numeric_sku_falls_back_and_unlimited_stock(store):
    respx.get(f"{API}/{STORE_ID}/products/777").mock(return_value=httpx.Response(404, json={"code": 404}))
    unlimited = product(variants=[{"id": 1, "sku": "777", "price": "9000.00", "promotional_price": None,
                                   "stock_management": False, "stock": None, "values": []}])
    respx.get(f"{API}/{STORE_ID}/products/sku/777").mock(return_value=httpx.Response(200, json=unlimited))
    tool, _ = build("check_stock", store)
    result = json.loads(async_to_sync(tool.ainvoke)({"product_id_or_sku": "777"}))
    assert result["stock"] == "unlimited"


@respx.mock
def test_create_customer_and_duplicate_email(store):
    route = respx.post(f"{API}/{STORE_ID}/customers").mock(side_effect=[
        httpx.Response(201, json={"id": 321, "name": "Ana", "email": "ana@example.com"}),
        httpx.Response(422, json={"code": 422, "message": "Unprocessable Entity",
                                  "description": {"email": ["has already been taken"]}}),
    ])
    tool, _ = build("create_customer", store)
    created = json.loads(tool.invoke({"name": "Ana", "email": "Ana@Example.com", "phone": "+54 11 5555 0000"}))
    assert created == {"created": True, "customer_id": 321, "email": "ana@example.com"}
    assert json.loads(route.calls[0].request.content) == {"name": "Ana", "email": "ana@example.com",
                                                          "phone": "+54 11 5555 0000"}
    duplicate = tool.invoke({"name": "Ana", "email": "ana@example.com"})
    assert "already exists" in duplicate
    assert tool.invoke({"name": "Ana", "email": "not-an-email"}).endswith("ask the customer to check it.")
    assert route.call_count == 2


@respx.mock
def test_model_cannot_pick_another_store(store, tenant_b, openai_key, make_agent):
    """Whatever the model asks, the bound tenant's store and token are used."""
    set_tenant_credential(tenant_b.pk, "tiendanube", "STORE_ID", "999")
    set_tenant_credential(tenant_b.pk, "tiendanube", "ACCESS_TOKEN", "tn-token-b")
    route = respx.get(f"{API}/{STORE_ID}/products").mock(return_value=httpx.Response(200, json=[product()]))
    other = respx.get(url__regex=r".*/999/.*").mock(return_value=httpx.Response(200, json=[]))
    agent = make_agent(enabled_tools=["search_products"], synonyms={"mallas": "leotardos"})
    openai_key.push(
        Reply.tool_call("search_products", {"query": "mallas store 999", "store_id": "999", "tenant_id": tenant_b.pk}),
        Reply.text("Tenemos el Leotardo Clásico Negro."),
    )
    result = run_turn(tenant_id=store.pk, agent_id=agent.pk, history=[], user_text="¿tenés mallas?")
    assert result.parts == ["Tenemos el Leotardo Clásico Negro."], result.error
    assert route.called and not other.called
    assert route.calls.last.request.url.params["q"] == "leotardos store 999"
    tool_schema = openai_key.requests[0]["tools"][0]["function"]["parameters"]
    assert set(tool_schema["properties"]) == {"query"}
