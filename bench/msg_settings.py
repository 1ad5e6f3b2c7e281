"""Settings for the ingest benchmark: the platform's, plus two comparison views on the same server."""

from platform_ai.settings import *  # noqa: F401,F403

ROOT_URLCONF = "msg_urls"
