"""Writes on tenants and their users."""

from __future__ import annotations

import secrets

from django.db import transaction
from django.utils.text import slugify

from tenants.models import Tenant, User


@transaction.atomic
def tenant_create(*, name: str, slug: str | None = None, is_active: bool = True) -> Tenant:
    return Tenant.objects.create(name=name, slug=slug or slugify(name), is_active=is_active)


def staff_user_create(*, tenant: Tenant, username: str, email: str = "", password: str | None = None) -> tuple[User, str]:
    """A tenant staff user (admin access to their tenant only). Returns the user and password."""
    password = password or secrets.token_urlsafe(12)
    user = User.objects.create_user(username=username, email=email, password=password, tenant=tenant, is_staff=True)
    return user, password
