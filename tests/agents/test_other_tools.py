"""send_email against a real local SMTP server, tenant HTTP tools, records kept in the turn context."""

from __future__ import annotations

import json

import httpx
import pytest
import respx

from agents.registry import ToolContext, get_registered_tool
from agents.selectors import resolve_tools
from agents.tool_builders import build_tool
from tests.agents.factories import tenant_tool
from vault.credentials import set_tenant_credential

pytestmark = pytest.mark.django_db


def build(name, tenant, **config):
    entry = get_registered_tool(name)
    ctx = ToolContext(tenant_id=tenant.pk, agent_id=1, conversation_id=9)
    return entry.factory(ctx, {**entry.default_config, **config}), ctx


def test_send_email_through_tenant_smtp(tenant_a, smtp_server):
    for name, value in smtp_server.credentials(FROM="hola@pointecoach.example").items():
        set_tenant_credential(tenant_a.pk, "smtp", name, value)
    tool, _ = build("send_email", tenant_a)
    assert tool.invoke({"to": "ana@example.com", "subject": "Tu talle", "body": "Te recomiendo el M."}) == \
        "E-mail sent to ana@example.com."
    [message] = smtp_server.messages
    assert message["From"] == "hola@pointecoach.example" and message["To"] == "ana@example.com"
    assert message["Subject"] == "Tu talle" and "Te recomiendo el M." in message.get_payload()
    assert tool.invoke({"to": "nope", "subject": "x", "body": "y"}).endswith("ask the customer to check it.")


def test_send_email_failure_and_missing_credentials(tenant_a, tenant_b):
    tool, _ = build("send_email", tenant_b)
    assert tool.invoke({"to": "a@example.com", "subject": "x", "body": "y"}).startswith("SMTP credentials not configured")
    for name, value in {"HOST": "127.0.0.1", "PORT": "1", "FROM": "x@example.com"}.items():
        set_tenant_credential(tenant_a.pk, "smtp", name, value)
    tool, _ = build("send_email", tenant_a, timeout=2)
    assert tool.invoke({"to": "a@example.com", "subject": "x", "body": "y"}).startswith("The e-mail could not be sent")


def test_report_and_handoff_record_in_the_turn_context(tenant_a):
    report, ctx = build("report_assistance", tenant_a)
    assert report.invoke({"type": "support", "score": 0.4, "reasoning": " resolved partly "}) == "Recorded."
    assert ctx.signals["assistance_reports"] == [{"type": "support", "score": 0.4, "reasoning": "resolved partly"}]
    handoff, ctx = build("handoff_to_human", tenant_a)
    handoff.invoke({"reason": "pide hablar con alguien"})
    assert ctx.signals["handoff"] == "pide hablar con alguien"


@respx.mock
def test_tenant_http_tool(tenant_a):
    tenant_tool(tenant_a, "stock_api")
    route = respx.get("https://stock.example/api").mock(return_value=httpx.Response(200, text="3 en stock"))
    spec = resolve_tools(tenant_a.pk, ["stock_api"])["stock_api"]
    tool = build_tool(spec, ToolContext(tenant_id=tenant_a.pk))
    assert tool.invoke({"query": "puntas"}) == "3 en stock"
    assert route.calls.last.request.url.params["q"] == "puntas"
    assert str(tenant_a.pk) not in str(route.calls.last.request.url)


def test_tenant_row_overrides_global_config(tenant_a, tenant_b):
    from agents.models import Tool

    Tool.dangerously_unscoped.create(tenant=None, name="search_products", prompt_injection="global line",
                                     config={"timeout": 7})
    Tool.dangerously_unscoped.create(tenant=tenant_a, name="search_products", prompt_injection="own line",
                                     config={"per_page": 3})
    mine = resolve_tools(tenant_a.pk, ["search_products"])["search_products"]
    theirs = resolve_tools(tenant_b.pk, ["search_products"])["search_products"]
    assert (mine.prompt_injection, mine.config["per_page"], mine.scope) == ("own line", 3, "tenant")
    assert (theirs.prompt_injection, theirs.timeout, theirs.scope) == ("global line", 7.0, "global")
    assert json.dumps(theirs.config)


@pytest.mark.parametrize("url,fragment", [
    ("http://169.254.169.254/latest/meta-data/", "private address"),
    ("http://127.0.0.1:8000/admin/", "private address"),
    ("http://10.0.0.5/api", "private address"),
    ("http://localhost/api", "points at this server"),
    ("ftp://stock.example/x", "no valid http(s) URL"),
])
def test_tenant_http_tool_refuses_internal_urls(tenant_a, url, fragment):
    from agents.models import Tool

    Tool.dangerously_unscoped.create(tenant=tenant_a, name="probe", type="http", config={"url": url})
    spec = resolve_tools(tenant_a.pk, ["probe"])["probe"]
    with respx.mock(assert_all_called=False) as mock:
        assert fragment in build_tool(spec, ToolContext(tenant_id=tenant_a.pk)).invoke({"query": "x"})
        assert not mock.calls
