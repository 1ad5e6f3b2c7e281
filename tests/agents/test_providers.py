"""Provider factory and credential wiring; a Google turn through the fake Gemini REST server."""

from __future__ import annotations

import pytest
from langchain_google_genai import ChatGoogleGenerativeAI
from langchain_openai import ChatOpenAI

from agents.catalog import CATALOG, UnknownModel, get_model
from agents.providers import build_chat_model
from agents.runtime import run_turn
from tests.fakes.openai_server import Reply
from vault.credentials import CredentialNotConfigured, set_tenant_credential

pytestmark = pytest.mark.django_db


def test_catalog_ids_come_from_settings(settings):
    settings.MODEL_IDS = {**settings.MODEL_IDS, "gemini-3-pro": "gemini-3-pro-preview-11-2026"}
    assert get_model("gemini-3-pro").model_id == "gemini-3-pro-preview-11-2026"
    assert get_model("gpt-5-mini").cost(1_000_000, 1_000_000) == CATALOG["gpt-5-mini"].input_price_per_million + \
        CATALOG["gpt-5-mini"].output_price_per_million
    with pytest.raises(UnknownModel, match="Valid: gpt-5.2, gpt-5-mini, gemini-3-pro, gemini-3-flash"):
        get_model("gpt-4o")


def test_openai_factory_uses_the_vault_key_and_base_url(tenant_a):
    with pytest.raises(CredentialNotConfigured) as excinfo:
        build_chat_model(tenant_id=tenant_a.pk, model_version="gpt-5-mini", temperature=0.7)
    assert excinfo.value.public_message == "OpenAI credentials not configured"
    set_tenant_credential(tenant_a.pk, "openai", "API_KEY", "sk-vault-key-1234567")
    set_tenant_credential(tenant_a.pk, "openai", "BASE_URL", "http://127.0.0.1:9/v1")
    model = build_chat_model(tenant_id=tenant_a.pk, model_version="gpt-5.2", temperature=0.4)
    assert isinstance(model, ChatOpenAI)
    assert model.openai_api_key.get_secret_value() == "sk-vault-key-1234567"
    assert model.openai_api_base == "http://127.0.0.1:9/v1" and model.temperature == 0.4
    assert build_chat_model(tenant_id=tenant_a.pk, model_version="gpt-5-mini", temperature=0.4).temperature is None


def test_google_factory_uses_the_vault_key(tenant_a, tenant_b, settings):
    settings.GOOGLE_API_BASE = ""
    with pytest.raises(CredentialNotConfigured) as excinfo:
        build_chat_model(tenant_id=tenant_a.pk, model_version="gemini-3-flash", temperature=0.6)
    assert excinfo.value.public_message == "Google credentials not configured"
    set_tenant_credential(tenant_a.pk, "google", "API_KEY", "AIza-tenant-a-key")
    model = build_chat_model(tenant_id=tenant_a.pk, model_version="gemini-3-flash", temperature=0.6)
    assert isinstance(model, ChatGoogleGenerativeAI)
    assert model.google_api_key.get_secret_value() == "AIza-tenant-a-key"
    assert model.model.endswith(settings.MODEL_IDS["gemini-3-flash"]) and model.temperature == 0.6
    with pytest.raises(CredentialNotConfigured):  # tenant B never gets tenant A's key
        build_chat_model(tenant_id=tenant_b.pk, model_version="gemini-3-flash", temperature=0.6)


@pytest.fixture
def google_agent(tenant_a, make_agent, gemini_server):
    set_tenant_credential(tenant_a.pk, "google", "API_KEY", "AIza-tenant-a-key")
    return make_agent(model_version="gemini-3-flash", temperature=0.6, enabled_tools=["handoff_to_human"])


def test_google_turn_with_tool_call(google_agent, gemini_server):
    gemini_server.push(Reply.tool_call("handoff_to_human", {"reason": "quiere un humano"}), Reply.text("Ya te derivo."))
    result = run_turn(tenant_id=google_agent.tenant_id, agent_id=google_agent.pk, history=[], user_text="humano")
    assert result.error is None, result.error
    assert result.parts == ["Ya te derivo."] and result.handoff_reason == "quiere un humano"
    assert result.usage["input_tokens"] > 0 and result.usage["cost"] > 0
    assert gemini_server.request_headers[-1]["x-goog-api-key"] == "AIza-tenant-a-key"
    assert gemini_server.system_prompt(0).startswith("Sos una asesora")
    assert gemini_server.tool_names(0) == ["handoff_to_human"]
    assert gemini_server.requests[0]["generationConfig"]["temperature"] == 0.6


def test_google_invalid_key(google_agent, gemini_server, tenant_a):
    gemini_server.push(Reply.error(400, "API key not valid. Please pass a valid API key."))
    result = run_turn(tenant_id=google_agent.tenant_id, agent_id=google_agent.pk, history=[], user_text="hola")
    assert result.error == f"Google rejected the API key for tenant {tenant_a.slug}"
