"""Integration state for the admin banner and the API: tokens expiring soon, apps uninstalled."""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.utils import timezone

from vault.models import Credential
from vault.schemas import CATEGORY_LABELS

EXPIRY_WARNING = timedelta(days=7)
EXPIRING_CATEGORIES = ("meta", "whatsapp_cloud")


def expiring_credentials(tenant_ids=None, *, now=None) -> list[dict]:
    """Credentials expiring within 7 days (or expired), for one tenant, some, or all (None)."""
    now = now or timezone.now()
    rows = Credential.dangerously_unscoped.filter(
        category__in=EXPIRING_CATEGORIES, expires_at__isnull=False, expires_at__lte=now + EXPIRY_WARNING,
        disabled_at__isnull=True,
    )
    if tenant_ids is not None:
        rows = rows.filter(tenant_id__in=list(tenant_ids))
    return [
        {"tenant_id": row.tenant_id, "category": row.category, "name": row.name, "expires_at": row.expires_at,
         "expired": row.expires_at <= now, "label": CATEGORY_LABELS.get(row.category, row.category)}
        for row in rows.only("tenant_id", "category", "name", "expires_at").order_by("expires_at")
    ]


def disabled_categories(tenant_ids=None) -> list[dict]:
    rows = Credential.dangerously_unscoped.filter(disabled_at__isnull=False)
    if tenant_ids is not None:
        rows = rows.filter(tenant_id__in=list(tenant_ids))
    seen = {}
    for tenant_id, category, disabled_at in rows.values_list("tenant_id", "category", "disabled_at"):
        seen.setdefault((tenant_id, category), disabled_at)
    return [{"tenant_id": t, "category": c, "label": CATEGORY_LABELS.get(c, c), "disabled_at": at}
            for (t, c), at in sorted(seen.items())]


def meta_deliveries_refused(tenant_ids=None) -> list[int]:
    """Tenants with an active Meta channel while the platform has no META_APP_SECRET: every
    delivery to them is refused (401), so their customers' messages never arrive."""
    from messaging.models import ChannelBinding, Provider

    if settings.META_APP_SECRET:
        return []
    rows = ChannelBinding.dangerously_unscoped.filter(provider=Provider.META_DIRECT, is_active=True)
    if tenant_ids is not None:
        rows = rows.filter(tenant_id__in=list(tenant_ids))
    return sorted(set(rows.values_list("tenant_id", flat=True)))


def banners(tenant_ids=None) -> list[str]:
    """One line per problem staff should act on (admin index and base template)."""
    lines = []
    refused = meta_deliveries_refused(tenant_ids)
    if refused:
        lines.append(
            (f"Tenants {', '.join(map(str, refused))}: " if tenant_ids is None else "")
            + "Meta webhook deliveries are refused: the platform has no META_APP_SECRET, so WhatsApp Cloud, "
              "Messenger and Instagram messages cannot be verified and do not arrive. "
            + ("Set META_APP_SECRET." if tenant_ids is None else "Ask the platform operator to set META_APP_SECRET."))
    for row in expiring_credentials(tenant_ids):
        when = "expired" if row["expired"] else f"expires {row['expires_at']:%Y-%m-%d}"
        prefix = f"Tenant {row['tenant_id']}: " if tenant_ids is None else ""
        lines.append(f"{prefix}{row['label']} token {row['name']} {when}: reconnect Meta to renew it.")
    for row in disabled_categories(tenant_ids):
        prefix = f"Tenant {row['tenant_id']}: " if tenant_ids is None else ""
        lines.append(f"{prefix}{row['label']} access was revoked on {row['disabled_at']:%Y-%m-%d} "
                     "(app uninstalled or suspended): reconnect it.")
    return lines


def integration_status(tenant_id: int) -> dict:
    from vault.credentials import check_credentials

    expiring = expiring_credentials([tenant_id])
    return {
        "meta": {"connected": check_credentials(tenant_id, "meta"),
                 "expiring": [r for r in expiring if r["category"] == "meta"]},
        "whatsapp_cloud": {"connected": check_credentials(tenant_id, "whatsapp_cloud"),
                           "expiring": [r for r in expiring if r["category"] == "whatsapp_cloud"]},
        "tiendanube": {"connected": check_credentials(tenant_id, "tiendanube"),
                       "disabled": any(r["category"] == "tiendanube" for r in disabled_categories([tenant_id]))},
        "token_expiring_soon": bool(expiring),
        "banners": banners([tenant_id]),
    }
