"""Encrypted per-tenant credentials. Read them only through vault.credentials."""

from __future__ import annotations

from django.db import models

from tenants.models import TenantScopedModel
from vault.fields import StrictEncryptedTextField
from vault.schemas import is_secret, mask


class Credential(TenantScopedModel):
    category = models.CharField(max_length=40)
    name = models.CharField(max_length=60)
    value = StrictEncryptedTextField()
    expires_at = models.DateTimeField(null=True, blank=True, help_text="For tokens that expire (Meta).")
    disabled_at = models.DateTimeField(
        null=True, blank=True, help_text="Set when the provider revoked access (e.g. app uninstalled)."
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    last_used_at = models.DateTimeField(null=True, blank=True)

    class Meta(TenantScopedModel.Meta):
        constraints = [
            models.UniqueConstraint(fields=["tenant", "category", "name"], name="credential_unique_per_tenant")
        ]
        ordering = ["category", "name"]

    def __str__(self) -> str:
        return f"{self.category}/{self.name}"

    @property
    def masked_value(self) -> str:
        return mask(self.value or "", secret=is_secret(self.category, self.name))

    def __repr__(self) -> str:  # never print the value
        return f"<Credential {self.pk} {self.category}/{self.name} tenant={self.tenant_id}>"


class KeyCanary(models.Model):
    """One row encrypted at install time; if it does not decrypt, the configured key is wrong."""

    PLAINTEXT = "platform-ai vault canary"
    token = StrictEncryptedTextField()

    tenant_scope_exempt = "holds no tenant data"
