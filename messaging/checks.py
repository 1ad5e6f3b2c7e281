"""System checks for messaging settings a deployment is easy to miss (`manage.py check`)."""

from __future__ import annotations

from django.conf import settings
from django.core.checks import Warning, register


@register("messaging")
def check_meta_app_secret(app_configs=None, **kwargs):
    if settings.META_APP_SECRET:
        return []
    return [Warning(
        "META_APP_SECRET is not set: every Meta webhook delivery (WhatsApp Cloud, Messenger, Instagram) "
        "is refused with 401, since its X-Hub-Signature-256 cannot be verified.",
        hint="Set META_APP_SECRET to the Meta app's secret (App settings > Basic), e.g. in .env.",
        id="messaging.W001",
    )]


@register("messaging")
def check_internal_secret(app_configs=None, **kwargs):
    if settings.INTERNAL_SECRET_KEY:
        return []
    return [Warning(
        "INTERNAL_SECRET_KEY is not set: POST /messages/relay refuses every X-Internal-Secret caller "
        "(401); only tenant users' tokens are accepted.",
        hint="Set INTERNAL_SECRET_KEY to a long random value shared with the services that call the relay.",
        id="messaging.W002",
    )]
