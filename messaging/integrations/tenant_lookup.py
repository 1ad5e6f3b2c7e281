"""Which tenant a provider's account id belongs to (webhooks carry the store id, not ours).

The vault encrypts every value, so credential values cannot be filtered in SQL; the stored
STORE_IDs of one category are decrypted and compared here. Disabled credentials count too:
an `app/resumed` webhook must find the tenant whose credentials a suspension disabled.
"""

from __future__ import annotations

from vault.models import Credential


def tenants_with_credential_value(category: str, name: str, value: str) -> list[int]:
    wanted = str(value).strip()
    rows = Credential.dangerously_unscoped.filter(category=category, name=name).only("tenant_id", "value")
    return sorted({row.tenant_id for row in rows if (row.value or "").strip() == wanted})
