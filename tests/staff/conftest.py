import pytest


@pytest.fixture(autouse=True)
def _in_memory_channel_layer(settings):
    # Consumers are unit-tested in one process; the browser tests exercise the PostgreSQL layer.
    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
