"""System checks for messaging settings a deployment is easy to miss (`manage.py check`)."""

from __future__ import annotations

from django.conf import settings
from django.core.checks import Warning, register


def _unset(name: str, consequence: str, hint: str, check_id: str) -> list[Warning]:
    return [] if getattr(settings, name) else [Warning(f"{name} is not set: {consequence}", hint=hint, id=check_id)]


@register("messaging")
def check_meta_app_secret(app_configs=None, **kwargs):
    return _unset(
        "META_APP_SECRET",
        "every Meta webhook delivery (WhatsApp Cloud, Messenger, Instagram) is refused with 401, since its "
        "X-Hub-Signature-256 cannot be verified.",
        "Set META_APP_SECRET to the Meta app's secret (App settings > Basic), e.g. in .env.",
        "messaging.W001",
    )


@register("messaging")
def check_internal_secret(app_configs=None, **kwargs):
    return _unset(
        "INTERNAL_SECRET_KEY",
        "POST /messages/relay refuses every X-Internal-Secret caller (401); only tenant users' tokens are accepted.",
        "Set INTERNAL_SECRET_KEY to a long random value shared with the services that call the relay.",
        "messaging.W002",
    )
