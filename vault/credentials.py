"""The only way to a tenant's API keys.

    api_key = await get_tenant_credential(tenant_id, "openai", "API_KEY")

Never read provider keys from the environment. Decrypted values are cached per process for
VAULT_CACHE_SECONDS and dropped on every write made by this process; other processes see a
change after at most that long.
"""

from __future__ import annotations

import logging
import threading
import time

from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from vault.logging import register_secret
from vault.models import Credential
from vault.schemas import CATEGORY_LABELS, CATEGORY_SCHEMAS, check_value, validate_name

logger = logging.getLogger(__name__)


class CredentialNotConfigured(LookupError):
    def __init__(self, tenant_id: int, category: str, name: str | None = None):
        self.tenant_id, self.category, self.name = tenant_id, category, name
        what = f"{category}/{name}" if name else category
        super().__init__(f"Credential {what} is not configured for tenant {tenant_id}.")

    @property
    def public_message(self) -> str:
        """The message users see, e.g. "OpenAI credentials not configured"."""
        return f"{CATEGORY_LABELS.get(self.category, self.category)} credentials not configured"


_cache: dict[tuple[int, str, str], tuple[str, float]] = {}
_cache_lock = threading.Lock()


def _cache_get(key):
    with _cache_lock:
        hit = _cache.get(key)
        if hit and hit[1] > time.monotonic():
            return hit[0]
        _cache.pop(key, None)
    return None


def _cache_put(key, value):
    ttl = settings.VAULT_CACHE_SECONDS
    if ttl > 0:
        with _cache_lock:
            _cache[key] = (value, time.monotonic() + ttl)


def invalidate_cache(tenant_id: int | None = None) -> None:
    with _cache_lock:
        for key in [k for k in _cache if tenant_id is None or k[0] == tenant_id]:
            del _cache[key]


def get_tenant_credential_sync(tenant_id: int, category: str, name: str) -> str:
    key = (int(tenant_id), category, name)
    cached = _cache_get(key)
    if cached is not None:
        return cached
    row = (
        Credential.objects.for_tenant(tenant_id)
        .filter(category=category, name=name, disabled_at__isnull=True)
        .only("id", "value")
        .first()
    )
    if row is None or not row.value:
        raise CredentialNotConfigured(tenant_id, category, name)
    Credential.objects.for_tenant(tenant_id).filter(pk=row.pk).update(last_used_at=timezone.now())
    if validate_name(category, name).secret:
        register_secret(row.value)
    _cache_put(key, row.value)
    return row.value


async def get_tenant_credential(tenant_id: int, category: str, name: str) -> str:
    return await sync_to_async(get_tenant_credential_sync)(tenant_id, category, name)


def get_optional_credential(tenant_id: int, category: str, name: str, default: str | None = None) -> str | None:
    try:
        return get_tenant_credential_sync(tenant_id, category, name)
    except CredentialNotConfigured:
        return default


def get_category(tenant_id: int, category: str) -> dict[str, str]:
    """Every stored name of one category (raises if a required one is missing)."""
    schema = CATEGORY_SCHEMAS[category]
    values = {}
    for name, entry in schema.items():
        try:
            values[name] = get_tenant_credential_sync(tenant_id, category, name)
        except CredentialNotConfigured:
            if entry.required:
                raise
    return values


def check_credentials(tenant_id: int, category: str) -> bool:
    """True when every required name of the category is stored (and not disabled)."""
    required = {n for n, entry in CATEGORY_SCHEMAS[category].items() if entry.required}
    present = set(
        Credential.objects.for_tenant(tenant_id)
        .filter(category=category, disabled_at__isnull=True)
        .exclude(value="")
        .values_list("name", flat=True)
    )
    return required <= present


class CredentialConflict(ValueError):
    def __init__(self, existing: Credential):
        self.existing = existing
        super().__init__(
            f"Credential {existing.category}/{existing.name} already exists (id {existing.pk}); "
            "update it instead."
        )


def set_tenant_credential(
    tenant_id: int, category: str, name: str, value: str, *, expires_at=None, replace: bool = True
) -> Credential:
    """Create or update one credential (validated against the category schema)."""
    validate_name(category, name)
    if value is None or not str(value).strip():
        raise ValueError(f"Credential {category}/{name} needs a non-empty value.")
    try:
        value = check_value(value)
    except ValueError as exc:
        raise ValueError(f"Credential {category}/{name}: {exc}") from None
    with transaction.atomic():
        existing = (
            Credential.objects.for_tenant(tenant_id).select_for_update().filter(category=category, name=name).first()
        )
        if existing and not replace:
            raise CredentialConflict(existing)
        if existing:
            existing.value, existing.expires_at, existing.disabled_at = value, expires_at, None
            existing.save(update_fields=["value", "expires_at", "disabled_at", "updated_at"])
            credential = existing
        else:
            try:
                with transaction.atomic():
                    credential = Credential(
                        tenant_id=tenant_id, category=category, name=name, value=value, expires_at=expires_at
                    )
                    credential.save()
            except IntegrityError:  # a concurrent writer won the race
                existing = Credential.objects.for_tenant(tenant_id).get(category=category, name=name)
                raise CredentialConflict(existing) from None
    invalidate_cache(tenant_id)
    logger.info("Credential %s/%s stored for tenant %s", category, name, tenant_id)
    return credential


def disable_category(tenant_id: int, category: str) -> int:
    """Mark every credential of a category unusable (provider revoked access); keeps the rows."""
    count = (
        Credential.objects.for_tenant(tenant_id)
        .filter(category=category, disabled_at__isnull=True)
        .update(disabled_at=timezone.now())
    )
    invalidate_cache(tenant_id)
    return count


def enable_category(tenant_id: int, category: str) -> int:
    count = Credential.objects.for_tenant(tenant_id).filter(category=category).update(disabled_at=None)
    invalidate_cache(tenant_id)
    return count


def delete_tenant_credential(tenant_id: int, category: str, name: str) -> bool:
    deleted, _ = Credential.objects.for_tenant(tenant_id).filter(category=category, name=name).delete()
    invalidate_cache(tenant_id)
    return bool(deleted)
