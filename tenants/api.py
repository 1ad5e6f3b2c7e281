from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.response import Response

from tenants.api_base import TenantAPIView
from tenants.models import Tenant


class MeView(TenantAPIView):
    @extend_schema(
        responses=inline_serializer(
            "Me",
            {
                "user": inline_serializer("MeUser", {"id": serializers.UUIDField(), "username": serializers.CharField(),
                                                     "email": serializers.EmailField()}),
                "tenant": inline_serializer("MeTenant", {"id": serializers.IntegerField(), "name": serializers.CharField(),
                                                         "slug": serializers.CharField()}),
            },
        )
    )
    def get(self, request):
        tenant = Tenant.objects.get(pk=self.tenant_id)
        user = request.user
        return Response({
            "user": {"id": str(user.pk), "username": user.username, "email": user.email},
            "tenant": {"id": tenant.pk, "name": tenant.name, "slug": tenant.slug},
        })
