import pytest

from tests.messaging import factories
from tests.messaging.helpers import APP_SECRET


@pytest.fixture(autouse=True)
def _messaging_settings(settings):
    settings.META_APP_SECRET = APP_SECRET
    settings.META_VERIFY_TOKEN = "verify-me"
    settings.MESSAGE_BUFFER_SECONDS = 16
    settings.RELAY_SPACING_SECONDS = 4
    settings.RELAY_RETRY_BASE_SECONDS = 0.01
    settings.RELAY_RETRY_MAX_SECONDS = 0.05
    settings.META_GRAPH_BASE = "https://graph.test/v23.0"
    settings.YCLOUD_API_BASE = "https://ycloud.test/v2"


@pytest.fixture
def wa_binding(tenant_a):
    return factories.binding(tenant_a, provider="meta_direct", channel_source="whatsapp", external_id="1122334455667")


@pytest.fixture
def anon(client):
    return client


# The fake OpenAI-protocol server (agents' fixture), imported rather than registered with
# pytest_plugins, which only a top-level conftest may do.
from tests.fakes.fixtures import _openai_server_session, openai_server  # noqa: E402,F401


@pytest.fixture
def agent_a(tenant_a):
    from agents.services import agent_create

    return agent_create(tenant_id=tenant_a.pk, name="Ventas", role="sales", model_version="gpt-5.2",
                        system_prompt="Sos una asesora de la tienda.", require_credentials=False)


@pytest.fixture
def model_a(tenant_a, openai_server, settings):
    """Tenant A's OpenAI key, pointing at the fake model server."""
    from vault.credentials import set_tenant_credential

    settings.AGENT_MODEL_MAX_RETRIES = 0
    settings.AGENT_MODEL_TIMEOUT_SECONDS = 5
    set_tenant_credential(tenant_a.pk, "openai", "API_KEY", "sk-test-tenant-a-0123456789")
    set_tenant_credential(tenant_a.pk, "openai", "BASE_URL", openai_server.base_url)
    return openai_server
