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
    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}


@pytest.fixture
def wa_binding(tenant_a):
    return factories.binding(tenant_a, provider="meta_direct", channel_source="whatsapp", external_id="1122334455667")


@pytest.fixture
def anon(client):
    return client
