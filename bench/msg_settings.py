"""Settings for the ingest benchmark: the platform's, plus two comparison views on the same server."""

from platform_ai.settings import *  # noqa: F401,F403

ROOT_URLCONF = "msg_urls"

import environ as _environ  # noqa: E402

if _environ.Env()("BENCH_CHANNEL_LAYER", default="") == "memory":
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
