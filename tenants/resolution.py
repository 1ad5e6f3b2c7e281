"""The Tenant Resolution Protocol: the tenant comes from the users table, nothing else.

The auth layer knows a user UUID; the data layer needs the tenant's integer id. A tenant id in
a token claim, header, query string or request body is never trusted.
"""

from __future__ import annotations

from django.core.exceptions import PermissionDenied


class TenantInactive(PermissionDenied):
    pass


class TenantNotAssigned(PermissionDenied):
    pass


class UnknownUser(PermissionDenied):
    pass


def resolve_tenant(user_id) -> int:
    """Read the user's tenant id from the users table (one query). Raises PermissionDenied."""
    from tenants.models import User

    row = (
        User.objects.filter(pk=user_id, is_active=True)
        .values_list("tenant_id", "tenant__is_active", "tenant__slug")
        .first()
    )
    if row is None:
        raise UnknownUser("User not found or inactive.")
    tenant_id, tenant_active, slug = row
    if tenant_id is None:
        raise TenantNotAssigned("This user belongs to no tenant (platform administrator).")
    if not tenant_active:
        raise TenantInactive(f"Tenant '{slug}' is inactive; contact the platform administrator.")
    return tenant_id
