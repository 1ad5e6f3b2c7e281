"""The playground in a real browser: a simulated customer message goes through the buffer job,
the agent turn (against the local OpenAI-protocol server) and the relay, and the answer
arrives over the websocket; without a key the page says so."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from agents.services import agent_create
from tests.browser.conftest import login
from tests.conftest import make_staff, make_tenant
from tests.fakes.fixtures import *  # noqa: F401,F403  (openai_server)
from tests.fakes.openai_server import Reply
from tests.messaging.helpers import Worker
from vault.credentials import set_tenant_credential

pytestmark = [pytest.mark.browser, pytest.mark.slow]


@pytest.fixture
def shop():
    tenant = make_tenant("shop-a")
    make_staff(tenant, "alice")
    agent = agent_create(tenant_id=tenant.pk, name="Ventas", role="sales", model_version="gpt-5-mini",
                         system_prompt="Sos una asesora de danza.", require_credentials=False)
    return tenant, agent


def test_playground_answers_through_the_local_model_server(page, shop, openai_server, tmp_path):
    tenant, agent = shop
    set_tenant_credential(tenant.pk, "openai", "API_KEY", "sk-test-playground-0123456789")
    set_tenant_credential(tenant.pk, "openai", "BASE_URL", openai_server.base_url)
    openai_server.push(Reply.text("¡Hola! Sí, tenemos puntas Grishko en talle 37."))
    with Worker(tmp_path / "worker.log", RELAY_SPACING_SECONDS=0, MESSAGE_BUFFER_SECONDS=0) as worker:
        login(page, "alice", "pw-alice", next_path=f"/admin/live/playground/?agent={agent.pk}")
        expect(page.locator("#live-pane")).to_have_attribute("data-socket", "open")
        expect(page.locator("#missing-credentials")).to_have_count(0)
        page.select_option("#buffer-seconds", "0")
        page.fill("#reply-text", "¿Tienen puntas talle 37?")
        page.click("#reply-send")
        expect(page.locator("#messages li.in", has_text="puntas talle 37")).to_be_visible()
        answer = page.locator("#messages li.role-agent", has_text="Grishko")
        try:
            expect(answer).to_be_visible(timeout=30_000)
        except AssertionError:
            raise AssertionError("no answer in the pane; worker log:\n" + worker.output()[-3000:]) from None
    request = openai_server.requests[-1]
    assert "¿Tienen puntas talle 37?" in str(request["messages"])


def test_playground_without_a_key_says_so(page, shop):
    _, agent = shop
    login(page, "alice", "pw-alice", next_path=f"/admin/live/playground/?agent={agent.pk}")
    expect(page.locator("#missing-credentials")).to_contain_text("OpenAI credentials not configured")
