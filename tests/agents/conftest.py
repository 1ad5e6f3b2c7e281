"""Fixtures for the agents tests: the fake OpenAI server and an agent wired to it."""

from __future__ import annotations

import pytest

from agents.services import agent_create
from vault.credentials import set_tenant_credential

from tests.fakes.fixtures import *  # noqa: F401,F403  (openai_server)


@pytest.fixture(autouse=True)
def _fast_model_settings(settings):
    from agents.graphs import clear_graph_cache

    # Staff fixtures hash passwords; PBKDF2 costs ~1 s per user on a loaded 2-core machine.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    settings.AGENT_MODEL_MAX_RETRIES = 0
    settings.AGENT_MODEL_TIMEOUT_SECONDS = 5
    clear_graph_cache()
    yield
    clear_graph_cache()


@pytest.fixture
def openai_key(tenant_a, openai_server):
    """Tenant A's OpenAI key, with BASE_URL pointing at the fake server."""
    set_tenant_credential(tenant_a.pk, "openai", "API_KEY", "sk-test-tenant-a-0123456789")
    set_tenant_credential(tenant_a.pk, "openai", "BASE_URL", openai_server.base_url)
    return openai_server


@pytest.fixture
def make_agent(tenant_a):
    def make(**fields):
        tenant_id = fields.pop("tenant_id", tenant_a.pk)
        values = {"name": "Ventas", "role": "sales", "model_version": "gpt-5.2", "temperature": 0.7,
                  "system_prompt": "Sos una asesora experta en danza clásica.", "require_credentials": False}
        values.update(fields)
        return agent_create(tenant_id=tenant_id, **values)

    return make


@pytest.fixture
def temporary_tool():
    """Register a tool factory for one test: temporary_tool(name, factory, **register_kwargs)."""
    from agents import registry

    added = []

    def register(name, factory, **kwargs):
        kwargs.setdefault("description", f"Test tool {name}.")
        kwargs.setdefault("prompt_injection", f"Use {name} in tests.")
        registry.register_tool(name, **kwargs)(factory)
        added.append(name)
        return factory

    yield register
    for name in added:
        registry._REGISTRY.pop(name, None)
