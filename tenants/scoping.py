"""Fail-closed tenant scoping.

The current tenant lives in a ContextVar (one value per thread and per asyncio task, so two
concurrent requests or jobs never see each other's scope). The default manager of every
TenantScopedModel refuses to query without it. The ways in are `Model.objects.for_tenant(id)`
and `with tenant_scope(id):`. System code that really needs every tenant's rows uses the
manager named `dangerously_unscoped`, which stands out in review.
"""

from __future__ import annotations

import contextvars
from contextlib import contextmanager

from django.db import models

_current_tenant: contextvars.ContextVar[int | None] = contextvars.ContextVar("current_tenant", default=None)


class TenantScopeError(RuntimeError):
    """A tenant-scoped query or write happened outside (or against) the current tenant scope."""


def current_tenant_id() -> int | None:
    return _current_tenant.get()


def require_tenant_id() -> int:
    tenant_id = _current_tenant.get()
    if tenant_id is None:
        raise TenantScopeError("No tenant scope is active; wrap the code in tenant_scope(tenant_id).")
    return tenant_id


@contextmanager
def tenant_scope(tenant_id: int):
    """Run the block scoped to one tenant; the previous scope is restored in a finally."""
    if tenant_id is None:
        raise TenantScopeError("tenant_scope() needs a tenant id, got None.")
    token = _current_tenant.set(int(tenant_id))
    try:
        yield int(tenant_id)
    finally:
        _current_tenant.reset(token)


def enter_scope(tenant_id: int) -> contextvars.Token:
    """Lower-level form for frameworks whose enter and exit live in different methods."""
    return _current_tenant.set(int(tenant_id))


def exit_scope(token: contextvars.Token) -> None:
    _current_tenant.reset(token)


class TenantScopedQuerySet(models.QuerySet):
    def update(self, **kwargs):
        if "tenant" in kwargs or "tenant_id" in kwargs:
            raise TenantScopeError("Rows cannot be moved to another tenant with update().")
        return super().update(**kwargs)

    def bulk_create(self, objs, *args, **kwargs):
        for obj in objs:
            obj._assign_tenant_from_scope()
        return super().bulk_create(objs, *args, **kwargs)


class TenantScopedManager(models.Manager.from_queryset(TenantScopedQuerySet)):
    """Default manager: filters by the current tenant, raises outside a tenant scope."""

    def get_queryset(self):
        tenant_id = _current_tenant.get()
        if tenant_id is None:
            parent = getattr(self, "instance", None)
            if parent is not None and hasattr(self, "core_filters"):
                # A related manager (conversation.messages): the parent row was already loaded
                # through a legitimate path, and its children are rows of the parent's tenant.
                parent_tenant = getattr(parent, "tenant_id", None)
                queryset = super().get_queryset()
                return queryset.filter(tenant_id=parent_tenant) if parent_tenant is not None else queryset
            raise TenantScopeError(
                f"{self.model.__name__} queried outside a tenant scope; use "
                f"{self.model.__name__}.objects.for_tenant(tenant_id) or tenant_scope(tenant_id)."
            )
        return super().get_queryset().filter(tenant_id=tenant_id)

    def for_tenant(self, tenant_id: int):
        if tenant_id is None:
            raise TenantScopeError(f"{self.model.__name__}.objects.for_tenant() needs a tenant id, got None.")
        return TenantScopedQuerySet(self.model, using=self._db).filter(tenant_id=tenant_id)


class UnscopedManager(models.Manager.from_queryset(TenantScopedQuerySet)):
    """Every tenant's rows. For system code only (reconcilers, webhooks routing, rotation)."""
