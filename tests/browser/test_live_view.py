"""Staff in a real browser: a webhook appears live, a reply pauses the bot, other tenants see nothing."""

from __future__ import annotations

import httpx
import pytest
from playwright.sync_api import expect

from messaging import inbox
from messaging.models import ChatConversation, ChatMessage
from tests.browser.conftest import SERVER_SETTINGS, login
from tests.conftest import make_staff, make_tenant
from tests.messaging import factories
from tests.staff.payloads import signed_meta_request, whatsapp_text

pytestmark = pytest.mark.browser

PHONE_NUMBER_ID = "1122334455667"
CUSTOMER = "5491155550001"


@pytest.fixture
def shop():
    tenant = make_tenant("shop-a")
    staff = make_staff(tenant, "alice")
    binding = factories.binding(tenant, external_id=PHONE_NUMBER_ID)
    conversation = factories.conversation(
        tenant, binding=binding, contact_external_id=CUSTOMER, contact_name="Lucía",
    )
    factories.message(tenant, conversation=conversation, direction="in", role="customer", text="Hola!",
                      status="received")
    return tenant, staff, conversation


def post_webhook(server_url: str, text: str, *, wa_id: str = CUSTOMER, name: str = "Lucía") -> None:
    body = whatsapp_text(phone_number_id=PHONE_NUMBER_ID, wa_id=wa_id, name=name, text=text)
    raw, headers = signed_meta_request(body, SERVER_SETTINGS["META_APP_SECRET"])
    response = httpx.post(f"{server_url}/webhooks/meta/", content=raw, headers=headers, timeout=10)
    assert response.status_code == 200, response.text
    assert inbox.drain() == 1  # what a worker does next: the webhook stored the delivery raw


def open_pane(page, conversation):
    page.goto(f"/admin/live/{conversation.pk}/")
    expect(page.locator("#live-pane")).to_have_attribute("data-socket", "open")


def test_webhook_message_appears_live_and_a_staff_reply_pauses_the_bot(page, live_asgi_server, shop):
    tenant, staff, conversation = shop
    login(page, "alice", "pw-alice", next_path=f"/admin/live/{conversation.pk}/")
    expect(page.locator("#live-pane")).to_have_attribute("data-socket", "open")
    expect(page.locator("#messages li")).to_have_count(1)

    post_webhook(live_asgi_server.url, "¿Tienen zapatillas de punta talle 37?")
    incoming = page.locator("#messages li.in", has_text="zapatillas de punta talle 37")
    expect(incoming).to_be_visible()  # no reload: the page never navigated
    expect(page.locator(f'#inbox-list li[data-id="{conversation.pk}"] .preview')).to_contain_text("talle 37")

    post_webhook(live_asgi_server.url, "Hola, ¿hacen envíos a Rosario?", wa_id="5493415550009", name="Valentina")
    newcomer = page.locator("#inbox-list li").first
    expect(newcomer.locator(".name")).to_have_text("Valentina")  # a new conversation, on top
    expect(newcomer.locator(".unread")).to_have_text("1")
    expect(page.locator("#messages li", has_text="Rosario")).to_have_count(0)  # not in Lucía's pane

    page.fill("#reply-text", "Hola Lucía, soy Marta de la tienda: sí, tenemos.")
    page.click("#reply-send")
    reply = page.locator("#messages li.role-human", has_text="soy Marta")
    expect(reply).to_be_visible()
    expect(page.locator("#bot-toggle")).to_have_text("Resume bot")
    conversation.refresh_from_db()
    assert conversation.bot_paused_until is not None
    assert ChatMessage.dangerously_unscoped.filter(conversation=conversation, role="human", sent_by=staff).count() == 1

    page.click("#bot-toggle")
    expect(page.locator("#bot-toggle")).to_have_text("Pause bot")
    conversation.refresh_from_db()
    assert conversation.bot_paused_until is None


def test_reply_to_a_closed_conversation_shows_a_clear_message(page, shop):
    tenant, staff, conversation = shop
    ChatConversation.dangerously_unscoped.filter(pk=conversation.pk).update(status="closed")
    login(page, "alice", "pw-alice", next_path=f"/admin/live/{conversation.pk}/")
    expect(page.locator("#live-pane")).to_have_attribute("data-socket", "open")
    page.fill("#reply-text", "¿Seguís ahí?")
    page.click("#reply-send")
    expect(page.locator("#live-error")).to_contain_text(f"Conversation {conversation.pk} is closed")


def test_another_tenants_staff_cannot_open_the_conversation(page, shop):
    _, _, conversation = shop
    make_staff(make_tenant("shop-b"), "bob")
    login(page, "bob", "pw-bob")
    response = page.goto(f"/admin/live/{conversation.pk}/")
    assert response.status == 404
    assert "Lucía" not in page.content()
    code = page.evaluate(
        """(id) => new Promise((resolve) => {
            const ws = new WebSocket(`ws://${location.host}/ws/conversations/${id}/`);
            const received = [];
            ws.onmessage = (e) => received.push(e.data);
            ws.onclose = (e) => resolve({code: e.code, received});
        })""",
        conversation.pk,
    )
    assert code == {"code": 4404, "received": []}
