"""/api/v1/agents/ CRUD rules, the dry test turn, /api/v1/tools/."""

from __future__ import annotations

import pytest

from agents.models import Agent, AgentTurn
from tests.agents.factories import tenant_tool
from tests.fakes.openai_server import Reply
from vault.credentials import set_tenant_credential

pytestmark = pytest.mark.django_db

BODY = {"name": "Ventas", "role": "sales", "model_version": "gpt-5-mini", "temperature": 0.7,
        "system_prompt": "Hola", "enabled_tools": ["search_products"], "channels": ["whatsapp"]}


def test_create_requires_the_providers_key(api_a):
    response = api_a.post("/api/v1/agents/", BODY, format="json")
    assert response.status_code == 400
    assert response.json() == {"detail": "OpenAI credentials not configured", "code": "credentials_not_configured"}
    google = api_a.post("/api/v1/agents/", {**BODY, "model_version": "gemini-3-flash"}, format="json")
    assert google.json()["detail"] == "Google credentials not configured"


def test_create_and_update_with_key(api_a, openai_key):
    response = api_a.post("/api/v1/agents/", BODY, format="json")
    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["model_provider"] == "openai" and body["enabled_tools"] == ["search_products"]
    patched = api_a.patch(f"/api/v1/agents/{body['id']}/", {"temperature": 1.2, "synonyms": {"Mallas": "leotardos"}},
                          format="json")
    assert patched.status_code == 200, patched.json()
    assert patched.json()["temperature"] == 1.2 and patched.json()["synonyms"] == {"mallas": "leotardos"}


@pytest.mark.parametrize("change,field,fragment", [
    ({"model_version": "gpt-4"}, "model_version", "Valid: gpt-5.2, gpt-5-mini, gemini-3-pro, gemini-3-flash"),
    ({"model_provider": "google"}, "model_version", "is a OpenAI model"),
    ({"temperature": 2.5}, "temperature", "between 0 and 2"),
    ({"enabled_tools": ["search_products", "teleport"]}, "enabled_tools", "Unknown tools: teleport"),
    ({"channels": ["fax"]}, "channels", "Unknown channels"),
])
def test_create_rejects_bad_input_naming_the_field(api_a, openai_key, change, field, fragment):
    response = api_a.post("/api/v1/agents/", {**BODY, **change}, format="json")
    assert response.status_code == 400
    body = response.json()
    assert field in body["errors"] and fragment in body["detail"], body
    assert not Agent.dangerously_unscoped.exists()


def test_update_checks_key_only_when_the_model_changes(api_a, make_agent, tenant_a):
    agent = make_agent(model_version="gpt-5-mini")  # created without a key (like the demo seed)
    assert api_a.patch(f"/api/v1/agents/{agent.pk}/", {"name": "Renamed"}, format="json").status_code == 200
    response = api_a.patch(f"/api/v1/agents/{agent.pk}/", {"model_version": "gemini-3-pro"}, format="json")
    assert response.status_code == 400 and response.json()["detail"] == "Google credentials not configured"
    set_tenant_credential(tenant_a.pk, "google", "API_KEY", "AIza-test-key-123456")
    response = api_a.patch(f"/api/v1/agents/{agent.pk}/", {"model_version": "gemini-3-pro"}, format="json")
    assert response.status_code == 200 and response.json()["model_provider"] == "google"


def test_dry_turn_answers_through_the_fake_model(api_a, openai_key, make_agent):
    agent = make_agent(model_version="gpt-5-mini")
    openai_key.push(Reply.text("¡Hola! ¿Qué buscás?"))
    response = api_a.post(f"/api/v1/agents/{agent.pk}/test/", {"text": "hola"}, format="json")
    assert response.status_code == 200, response.json()
    body = response.json()
    assert body["parts"] == ["¡Hola! ¿Qué buscás?"] and body["tool_calls"] == []
    assert body["usage"]["input_tokens"] > 0
    assert openai_key.request_headers[-1]["authorization"] == "Bearer sk-test-tenant-a-0123456789"
    assert AgentTurn.objects.for_tenant(agent.tenant_id).get(pk=body["turn_id"]).conversation_id is None


def test_dry_turn_without_key_answers_the_clear_message(api_a, make_agent):
    agent = make_agent()
    response = api_a.post(f"/api/v1/agents/{agent.pk}/test/", {"text": "hola"}, format="json")
    assert response.status_code == 400
    assert response.json()["detail"] == "OpenAI credentials not configured"
    assert response.json()["code"] == "credentials_not_configured" and response.json()["parts"] == []


def test_dry_turn_requires_text(api_a, make_agent):
    agent = make_agent()
    response = api_a.post(f"/api/v1/agents/{agent.pk}/test/", {}, format="json")
    assert response.status_code == 400 and "text" in response.json()["detail"]


def test_tools_list_is_global_plus_own(api_a, tenant_a, tenant_b):
    tenant_tool(tenant_a, "my_stock_api")
    tenant_tool(tenant_b, "their_secret_api")
    names = {t["name"]: t for t in api_a.get("/api/v1/tools/").json()}
    assert {"search_products", "check_stock", "create_customer", "report_assistance", "send_email",
            "handoff_to_human", "my_stock_api"} <= set(names)
    assert "their_secret_api" not in names
    assert names["my_stock_api"]["scope"] == "tenant" and names["search_products"]["config"]["timeout"] == 10


def test_agent_can_enable_own_http_tool_but_not_another_tenants(api_a, openai_key, tenant_a, tenant_b):
    tenant_tool(tenant_a, "my_stock_api")
    tenant_tool(tenant_b, "their_secret_api")
    ok = api_a.post("/api/v1/agents/", {**BODY, "enabled_tools": ["my_stock_api"]}, format="json")
    assert ok.status_code == 201
    refused = api_a.post("/api/v1/agents/", {**BODY, "enabled_tools": ["their_secret_api"]}, format="json")
    assert refused.status_code == 400 and "their_secret_api" in refused.json()["detail"]
