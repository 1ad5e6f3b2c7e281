"""Tenants (the shops), their users, and the abstract base for every tenant-owned table."""

from __future__ import annotations

import uuid

from django.contrib.auth.models import AbstractUser
from django.db import models

from tenants.scoping import TenantScopedManager, TenantScopeError, UnscopedManager, current_tenant_id


class Tenant(models.Model):
    id = models.AutoField(primary_key=True)
    name = models.CharField(max_length=200)
    slug = models.SlugField(max_length=80, unique=True)
    is_active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class User(AbstractUser):
    """The users table: the auth layer knows this UUID, the data layer the tenant's integer id."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    tenant = models.ForeignKey(Tenant, null=True, blank=True, on_delete=models.PROTECT, related_name="users")

    # Users are the source of tenant resolution, not tenant-owned rows.
    tenant_scope_exempt = "the users table is where tenant ids are resolved from"

    class Meta(AbstractUser.Meta):
        swappable = "AUTH_USER_MODEL"
        constraints = [
            models.CheckConstraint(
                condition=models.Q(tenant__isnull=False) | models.Q(is_superuser=True),
                name="user_tenant_required_unless_superuser",
            )
        ]

    @property
    def is_platform_admin(self) -> bool:
        return self.is_superuser and self.tenant_id is None


class TenantScopedModel(models.Model):
    """Abstract base: an indexed tenant FK and a default manager that fails closed."""

    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, db_index=True, related_name="+")

    objects = TenantScopedManager()
    dangerously_unscoped = UnscopedManager()

    class Meta:
        abstract = True
        default_manager_name = "objects"
        base_manager_name = "dangerously_unscoped"

    @classmethod
    def from_db(cls, db, field_names, values, **kwargs):
        instance = super().from_db(db, field_names, values, **kwargs)
        instance._loaded_tenant_id = instance.__dict__.get("tenant_id")
        return instance

    def _assign_tenant_from_scope(self) -> None:
        scope = current_tenant_id()
        if self.tenant_id is None:
            if scope is None:
                raise TenantScopeError(
                    f"{type(self).__name__} has no tenant and no tenant scope is active."
                )
            self.tenant_id = scope
        elif scope is not None and self.tenant_id != scope:
            raise TenantScopeError(
                f"Refusing to write {type(self).__name__} for tenant {self.tenant_id} "
                f"inside the scope of tenant {scope}."
            )
        loaded = getattr(self, "_loaded_tenant_id", None)
        if loaded is not None and loaded != self.tenant_id:
            raise TenantScopeError(f"{type(self).__name__} {self.pk} cannot move to another tenant.")

    def save(self, *args, **kwargs):
        self._assign_tenant_from_scope()
        super().save(*args, **kwargs)
        self._loaded_tenant_id = self.tenant_id
