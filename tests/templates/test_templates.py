"""Template catalogue, instantiation (API, admin, service), the Pointe Coach seed."""

from __future__ import annotations

import pytest
from django.core.management import call_command
from django.test import Client

from agents import registry
from agents.models import Agent
from templates.catalogue import TEMPLATES, UnknownTemplate, create_agent_from_template
from templates.demo import DEFAULT_AGENT_TONE, SYNONYM_DICTIONARY
from tenants.models import Tenant
from tests.fakes.openai_server import Reply

pytestmark = pytest.mark.django_db


@pytest.fixture
def rag_search_registered():
    """The knowledge base app contributes rag_search; stand in for it here."""
    registry.register_tool("rag_search", description="kb", prompt_injection="Use rag_search.")(lambda ctx, cfg: None)
    yield
    registry._REGISTRY.pop("rag_search", None)


def test_catalogue_defaults():
    assert set(TEMPLATES) == {"sales", "support", "leads"}
    assert (TEMPLATES["sales"].temperature, TEMPLATES["sales"].tools) == (0.7, ("search_products", "check_stock"))
    assert (TEMPLATES["support"].temperature, TEMPLATES["support"].tools) == (0.5, ("rag_search",))
    assert (TEMPLATES["leads"].temperature, TEMPLATES["leads"].tools) == (0.6, ("create_customer",))
    assert all(t.default_prompt for t in TEMPLATES.values())


def test_list_templates(api_a):
    body = api_a.get("/api/v1/templates/").json()
    assert [t["key"] for t in body] == ["sales", "support", "leads"]


def test_instantiate_requires_key_then_creates(api_a, openai_key, tenant_a):
    api = "/api/v1/templates/sales/instantiate/"
    assert api_a.post(api, {}, format="json").status_code == 201
    agent = Agent.objects.for_tenant(tenant_a.pk).get()
    assert (agent.role, agent.temperature, agent.enabled_tools) == ("sales", 0.7, ["search_products", "check_stock"])
    response = api_a.post(api, {"name": "Ventas", "model_version": "gpt-5-mini", "synonyms": {"mallas": "leotardos"}},
                          format="json")
    assert response.status_code == 201
    assert response.json()["name"] == "Ventas" and response.json()["synonyms"] == {"mallas": "leotardos"}


def test_instantiate_errors(api_a, tenant_a, openai_key):
    missing = api_a.post("/api/v1/templates/nope/instantiate/", {}, format="json")
    assert missing.status_code == 404 and "Valid: sales, support, leads" in missing.json()["detail"]
    bad_model = api_a.post("/api/v1/templates/sales/instantiate/", {"model_version": "gpt-4"}, format="json")
    assert bad_model.status_code == 400 and "model_version" in bad_model.json()["errors"]
    unknown_tool = api_a.post(
        "/api/v1/templates/support/instantiate/", {"enabled_tools": ["rag_search", "no_such_tool"]}, format="json"
    )
    assert unknown_tool.status_code == 400 and "no_such_tool" in unknown_tool.json()["detail"]


def test_support_template_gets_the_knowledge_base_tool(api_a, openai_key):
    """rag_search is contributed by the rag app through the registry."""
    created = api_a.post("/api/v1/templates/support/instantiate/", {}, format="json")
    assert created.status_code == 201, created.json()
    assert created.json()["enabled_tools"] == ["rag_search"]


def test_instantiate_without_key_is_refused(api_a):
    response = api_a.post("/api/v1/templates/leads/instantiate/", {}, format="json")
    assert response.status_code == 400 and response.json()["detail"] == "OpenAI credentials not configured"


def test_support_template_with_rag(tenant_a, rag_search_registered):
    agent = create_agent_from_template(tenant_id=tenant_a.pk, template_key="support", require_credentials=False)
    assert agent.enabled_tools == ["rag_search"] and agent.temperature == 0.5
    with pytest.raises(UnknownTemplate):
        create_agent_from_template(tenant_id=tenant_a.pk, template_key="marketing")


def test_admin_add_from_template(user_a, tenant_a, openai_key):
    client = Client()
    client.force_login(user_a)
    assert client.get("/admin/agent_templates/agentfromtemplate/add/").status_code == 200
    response = client.post("/admin/agent_templates/agentfromtemplate/add/",
                           {"template": "sales", "name": "Ventas admin", "model_version": "gpt-5-mini", "synonyms": "{}"})
    assert response.status_code == 302, response.content.decode()[:2000]
    agent = Agent.objects.for_tenant(tenant_a.pk).get()
    assert (agent.name, agent.enabled_tools) == ("Ventas admin", ["search_products", "check_stock"])
    assert client.get(f"/admin/agent_templates/agentfromtemplate/{agent.pk}/change/").status_code == 200


def test_seed_demo_creates_pointe_coach_sales_agent_and_answers_clearly(openai_server):
    call_command("seed_demo")
    call_command("seed_demo")  # idempotent
    tenant = Tenant.objects.get(slug="pointe-coach")
    agent = Agent.objects.for_tenant(tenant.pk).get()
    assert agent.name == "Pointe Coach Sales" and agent.system_prompt == DEFAULT_AGENT_TONE
    assert agent.synonyms == SYNONYM_DICTIONARY and agent.role == "sales"
    from tests.conftest import token_client
    from tenants.models import User

    client = token_client(User.objects.get(username="demo"))
    response = client.post(f"/api/v1/agents/{agent.pk}/test/", {"text": "¿Tenés mallas?"}, format="json")
    assert response.status_code == 400 and response.json()["detail"] == "OpenAI credentials not configured"
    # Once a key is stored the same agent answers through the real SDK.
    from vault.credentials import set_tenant_credential

    set_tenant_credential(tenant.pk, "openai", "API_KEY", "sk-demo-key-1234567")
    set_tenant_credential(tenant.pk, "openai", "BASE_URL", openai_server.base_url)
    openai_server.push(Reply.text("¡Hola! Sí, tenemos leotardos."))
    response = client.post(f"/api/v1/agents/{agent.pk}/test/", {"text": "¿Tenés mallas?"}, format="json")
    assert response.status_code == 200 and response.json()["parts"] == ["¡Hola! Sí, tenemos leotardos."]
    assert "Usá voseo argentino" in openai_server.system_prompt()
    assert '"mallas" means "leotardos"' in openai_server.system_prompt()
