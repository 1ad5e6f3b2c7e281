"""`make screenshots`: docs/screenshots/*.png of the live view, playground, dashboard and admin,
taken from a demo tenant seeded with a few days of activity. Skipped unless --screenshots."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from agents.models import Agent, AgentTurn
from messaging import services
from messaging.live.playground_views import playground_contact_id
from messaging.models import ChatMessage
from templates import demo
from tests.browser.conftest import DESKTOP_VIEWPORT, PHONE_VIEWPORT, login
from tests.conftest import make_staff
from tests.staff.demo_data import seed_activity
from tenants.models import Tenant
from vault.credentials import set_tenant_credential

pytestmark = pytest.mark.browser

OUT = Path(__file__).resolve().parents[2] / "docs" / "screenshots"


@pytest.fixture
def demo_shop(request):
    if not request.config.getoption("--screenshots", default=False):
        pytest.skip("screenshots are taken by `make screenshots` (pytest --screenshots)")
    tenant = Tenant.objects.create(name=demo.DEMO_NAME, slug=demo.DEMO_SLUG)
    staff = make_staff(tenant, "demo")
    demo.seed_tenant_content(tenant.pk)
    agent = Agent.objects.for_tenant(tenant.pk).first()
    activity = seed_activity(tenant, days=14, agent=agent)
    lucia = activity["conversations"][0]
    turn = AgentTurn.dangerously_unscoped.create(
        tenant=tenant, agent=agent, conversation_id=lucia.pk, latency_ms=2140, input_tokens=1200, output_tokens=140,
        tool_calls=[{"name": "search_products", "arguments": {"query": "puntas talle 37"}, "ok": True,
                     "duration_ms": 312.4, "error": None}],
    )
    for direction, role, text, status in [
        ("in", "customer", "Hola! ¿Tienen zapatillas de punta talle 37?", "received"),
        ("out", "agent", "¡Hola Lucía! Sí: Grishko 2007 ($98.000) y Bloch Balance European ($112.000) en talle 37. "
                         "¿Querés que te reserve un par?", "read"),
        ("in", "customer", "La Grishko! ¿Puedo pasar a probármela hoy?", "received"),
    ]:
        message = ChatMessage.dangerously_unscoped.create(
            tenant=tenant, conversation=lucia, direction=direction, role=role, text=text, provider="meta_direct",
            status=status, turn_id=str(turn.pk) if role == "agent" else "",
        )
    ChatMessage.dangerously_unscoped.filter(pk=activity["failed"].pk).update(created_at=timezone.now())
    set_tenant_credential(tenant.pk, "meta", "USER_TOKEN", "EAAGdemo", expires_at=timezone.now() + timedelta(days=5))
    playground = services.playground_conversation(
        tenant_id=tenant.pk, agent_id=agent.pk, contact_id=playground_contact_id(staff, agent.pk),
        contact_name="demo (test)")
    set_tenant_credential(tenant.pk, "openai", "API_KEY", "sk-demo-screenshot-0000")
    for direction, role, text in [("in", "customer", "Busco mallas para mi hija de 8 años"),
                                  ("out", "agent", "¡Qué lindo! Tenemos leotardos de algodón en talles 6 a 10, "
                                                   "en negro, rosa y celeste. ¿Qué color le gusta?")]:
        ChatMessage.dangerously_unscoped.create(tenant=tenant, conversation=playground, direction=direction, role=role,
                                                text=text, provider="playground",
                                                status="received" if direction == "in" else "sent")
    OUT.mkdir(parents=True, exist_ok=True)
    return {"tenant": tenant, "agent": agent, "lucia": lucia, "last": message}


def test_screenshots(page, demo_shop):
    login(page, "demo", "pw-demo")
    page.screenshot(path=str(OUT / "admin.png"), full_page=True)

    page.goto(f"/admin/live/{demo_shop['lucia'].pk}/")
    expect(page.locator("#live-pane")).to_have_attribute("data-socket", "open")
    page.fill("#reply-text", "Hola Lucía, soy Marta del local: te la separo, te esperamos hasta las 19 h.")
    page.click("#reply-send")
    expect(page.locator("#messages li.role-human")).to_be_visible()
    page.locator("#messages details").first.evaluate("d => d.open = true")
    page.screenshot(path=str(OUT / "live-view.png"))

    page.set_viewport_size(PHONE_VIEWPORT)
    page.screenshot(path=str(OUT / "live-view-phone.png"))
    page.set_viewport_size(DESKTOP_VIEWPORT)

    page.goto(f"/admin/live/playground/?agent={demo_shop['agent'].pk}")
    expect(page.locator("#live-pane")).to_have_attribute("data-socket", "open")
    page.screenshot(path=str(OUT / "playground.png"))

    page.goto("/admin/dashboard/?days=14")
    page.screenshot(path=str(OUT / "dashboard.png"), full_page=True)
