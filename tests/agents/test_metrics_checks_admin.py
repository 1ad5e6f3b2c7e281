"""Metrics endpoints, the registry system check, sync_tools, and the admin pages."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from django.core.management import call_command
from django.test import Client
from django.utils import timezone

from agents.checks import check_enabled_tools_are_registered
from agents.models import Agent, AgentTurn, AssistanceReport, Tool
from agents.registry import registered_tools
from tests.agents.factories import agent as make_row_agent
from tests.agents.factories import tenant_tool

pytestmark = pytest.mark.django_db


def _at(obj, when):
    type(obj).dangerously_unscoped.filter(pk=obj.pk).update(created_at=when)


def test_assistance_and_usage_series(api_a, tenant_a, tenant_b):
    agent = make_row_agent(tenant_a, name="Ventas")
    other = make_row_agent(tenant_a, name="Soporte")
    today = timezone.now()
    yesterday = today - dt.timedelta(days=1)
    for score, when, kind in [(0.8, today, "sales"), (0.4, today, "sales"), (1.0, yesterday, "support")]:
        _at(AssistanceReport.dangerously_unscoped.create(tenant=tenant_a, agent=agent, type=kind, score=score), when)
    AssistanceReport.dangerously_unscoped.create(tenant=tenant_b, agent=make_row_agent(tenant_b), type="sales", score=0)
    for tokens, target, ok in [(100, agent, True), (50, agent, False), (10, other, True)]:
        AgentTurn.dangerously_unscoped.create(tenant=tenant_a, agent=target, input_tokens=tokens, output_tokens=tokens // 2,
                                              cost=Decimal("0.01"), ok=ok)
    assistance = api_a.get("/api/v1/metrics/assistance/").json()["results"]
    assert assistance == [
        {"date": yesterday.date().isoformat(), "type": "support", "count": 1, "average_score": 1.0},
        {"date": today.date().isoformat(), "type": "sales", "count": 2, "average_score": 0.6},
    ]
    only_today = api_a.get(f"/api/v1/metrics/assistance/?date_from={today.date().isoformat()}").json()["results"]
    assert [r["type"] for r in only_today] == ["sales"]
    usage = api_a.get(f"/api/v1/metrics/usage/?agent={agent.pk}").json()["results"]
    assert usage == [{"date": today.date().isoformat(), "agent_id": agent.pk, "agent_name": "Ventas", "turns": 2,
                      "failed_turns": 1, "input_tokens": 150, "output_tokens": 75, "cost": 0.02}]


def test_metrics_reject_bad_filters_and_foreign_agents(api_a, tenant_b):
    assert api_a.get("/api/v1/metrics/usage/?date_from=2026-13-01").status_code == 400
    assert api_a.get("/api/v1/metrics/usage/?date_from=2026-02-01&date_to=2026-01-01").status_code == 400
    foreign = make_row_agent(tenant_b)
    response = api_a.get(f"/api/v1/metrics/assistance/?agent={foreign.pk}")
    assert response.status_code == 404 and "not found or access denied" in response.json()["detail"]


def test_check_flags_agents_with_unregistered_tools(tenant_a):
    make_row_agent(tenant_a, enabled_tools=["search_products"])
    assert check_enabled_tools_are_registered() == []
    bad = make_row_agent(tenant_a, enabled_tools=["search_products", "teleport"])
    errors = check_enabled_tools_are_registered()
    assert [e.id for e in errors] == ["agents.E001"] and f"Agent {bad.pk}" in errors[0].msg and "teleport" in errors[0].msg
    tenant_tool(tenant_a, "teleport")  # a tenant HTTP tool of that name makes it valid
    assert check_enabled_tools_are_registered() == []


def test_sync_tools_upserts_global_rows_and_keeps_config_edits():
    call_command("sync_tools")
    rows = {t.name: t for t in Tool.dangerously_unscoped.filter(tenant__isnull=True)}
    assert set(rows) == set(registered_tools())
    Tool.dangerously_unscoped.filter(pk=rows["search_products"].pk).update(config={"timeout": 3})
    call_command("sync_tools")
    row = Tool.dangerously_unscoped.get(tenant__isnull=True, name="search_products")
    assert row.config == {"timeout": 3, "per_page": 5, "language": "es"}
    assert Tool.dangerously_unscoped.filter(tenant__isnull=True).count() == len(registered_tools())


def _admin(user):
    client = Client()
    client.force_login(user)
    return client


def test_agent_admin_add_validates_like_the_api(user_a, tenant_a):
    client = _admin(user_a)
    form = {"name": "Ventas", "role": "sales", "model_version": "gpt-5-mini", "temperature": "0.7",
            "system_prompt": "Hola", "enabled_tools": '["search_products"]', "channels": '["whatsapp"]',
            "synonyms": "{}", "is_active": "on"}
    page = client.post("/admin/agents/agent/add/", form)
    assert page.status_code == 200 and "OpenAI credentials not configured" in page.content.decode()
    from vault.credentials import set_tenant_credential

    set_tenant_credential(tenant_a.pk, "openai", "API_KEY", "sk-admin-test-123456")
    bad = client.post("/admin/agents/agent/add/", {**form, "enabled_tools": '["teleport"]'})
    assert "Unknown tools: teleport" in bad.content.decode()
    assert client.post("/admin/agents/agent/add/", form).status_code == 302
    agent = Agent.objects.for_tenant(tenant_a.pk).get()
    assert agent.model_provider == "openai" and agent.enabled_tools == ["search_products"]


def test_tool_admin_global_read_only_foreign_404(user_a, tenant_a, tenant_b):
    call_command("sync_tools")
    mine, theirs = tenant_tool(tenant_a, "mine"), tenant_tool(tenant_b, "theirs")
    global_row = Tool.dangerously_unscoped.get(tenant__isnull=True, name="search_products")
    client = _admin(user_a)
    listing = client.get("/admin/agents/tool/").content.decode()
    assert "mine" in listing and "search_products" in listing and "theirs" not in listing
    assert client.get(f"/admin/agents/tool/{theirs.pk}/change/").status_code == 404
    assert client.post(f"/admin/agents/tool/{theirs.pk}/delete/", {"post": "yes"}).status_code == 404
    assert client.post(f"/admin/agents/tool/{global_row.pk}/delete/", {"post": "yes"}).status_code == 403
    assert client.get(f"/admin/agents/tool/{mine.pk}/change/").status_code == 200
    Tool.dangerously_unscoped.get(pk=theirs.pk)  # untouched


def test_turn_admin_is_read_only(user_a, tenant_a):
    turn = AgentTurn.dangerously_unscoped.create(tenant=tenant_a, agent=make_row_agent(tenant_a), input_tokens=3)
    client = _admin(user_a)
    assert client.get(f"/admin/agents/agentturn/{turn.pk}/change/").status_code == 200
    assert client.post(f"/admin/agents/agentturn/{turn.pk}/change/", {"input_tokens": 999}).status_code == 403
    assert client.post("/admin/agents/agentturn/add/", {}).status_code == 403
    assert AgentTurn.objects.for_tenant(tenant_a.pk).get().input_tokens == 3
