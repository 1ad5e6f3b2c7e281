"""The daily Meta token job: flag what expires within 7 days, refresh what can be refreshed.

A long-lived user token that is still valid exchanges (fb_exchange_token) for a fresh one of
about 60 days; an expired one cannot, and stays flagged (admin banner, API field) until staff
reconnect. Logs name tenant, credential and dates, never a token.
"""

from __future__ import annotations

import logging

from django.db import close_old_connections
from django.utils import timezone
from procrastinate.contrib.django import app

from messaging.integrations import meta, status
from messaging.integrations.errors import ConnectError
from vault import credentials as vault

logger = logging.getLogger(__name__)


def refresh_expiring_tokens(*, now=None) -> dict:
    now = now or timezone.now()
    outcome = {"flagged": 0, "refreshed": 0, "failed": 0}
    # Meta connect stores one user token as both meta/USER_TOKEN and whatsapp_cloud/ACCESS_TOKEN:
    # exchange each distinct token once (keyed in memory only).
    exchanged: dict[str, tuple[str, object]] = {}
    for row in status.expiring_credentials(now=now):
        outcome["flagged"] += 1
        tenant_id, category, name = row["tenant_id"], row["category"], row["name"]
        if row["expired"]:
            logger.warning("Tenant %s: %s/%s expired at %s; staff must reconnect Meta",
                           tenant_id, category, name, row["expires_at"])
            outcome["failed"] += 1
            continue
        try:
            current = vault.get_tenant_credential_sync(tenant_id, category, name)
            if current not in exchanged:
                body = meta.long_lived_token(current)
                exchanged[current] = (body["access_token"], meta.expiry_of(body))
            token, expires_at = exchanged[current]
            vault.set_tenant_credential(tenant_id, category, name, token, expires_at=expires_at)
        except (ConnectError, vault.CredentialNotConfigured, KeyError) as exc:
            logger.warning("Tenant %s: %s/%s (expires %s) could not be refreshed: %s",
                           tenant_id, category, name, row["expires_at"], type(exc).__name__)
            outcome["failed"] += 1
            continue
        logger.info("Tenant %s: %s/%s refreshed, now expires %s", tenant_id, category, name, expires_at)
        outcome["refreshed"] += 1
    return outcome


@app.periodic(cron="17 4 * * *", periodic_id="meta-token-expiry")
@app.task(name="integrations.refresh_expiring_tokens", queue="integrations", queueing_lock="meta-token-expiry")
def refresh_expiring_tokens_job(timestamp: int):
    close_old_connections()
    try:
        return refresh_expiring_tokens()
    finally:
        close_old_connections()
