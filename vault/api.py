"""/api/v1/credentials/: the tenant's vault, values write-only and masked on read."""

from rest_framework import status
from rest_framework.exceptions import APIException

from tenants.api_base import TenantScopedViewSet
from vault import credentials as vault
from vault.models import Credential
from vault.serializers import CredentialSerializer


class Conflict(APIException):
    status_code = status.HTTP_409_CONFLICT
    default_code = "conflict"


class CredentialViewSet(TenantScopedViewSet):
    model = Credential
    serializer_class = CredentialSerializer

    def perform_create(self, serializer):
        data = serializer.validated_data
        try:
            serializer.instance = vault.set_tenant_credential(
                self.tenant_id, data["category"], data["name"], data["value"],
                expires_at=data.get("expires_at"), replace=False,
            )
        except vault.CredentialConflict as exc:
            raise Conflict(str(exc)) from None

    def perform_update(self, serializer):
        instance = serializer.instance
        data = serializer.validated_data
        category, name = data.get("category", instance.category), data.get("name", instance.name)
        clash = (
            Credential.objects.for_tenant(self.tenant_id)
            .filter(category=category, name=name).exclude(pk=instance.pk).first()
        )
        if clash:
            raise Conflict(str(vault.CredentialConflict(clash)))
        serializer.save()
        vault.invalidate_cache(self.tenant_id)

    def perform_destroy(self, instance):
        instance.delete()
        vault.invalidate_cache(self.tenant_id)
