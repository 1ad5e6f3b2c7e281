"""POST /messages/relay: the Universal Delivery Relay's HTTP door (202 with the message ids).

Authenticated by X-Internal-Secret (INTERNAL_SECRET_KEY) for internal callers, or by a tenant
user's token; then the body's tenant_id must be that user's tenant (read from the users table).
"""

from __future__ import annotations

import hmac

from django.conf import settings
from rest_framework import exceptions, status
from rest_framework.authentication import SessionAuthentication, TokenAuthentication
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.views import APIView

from messaging import services
from messaging.models import Role
from messaging.serializers import RelayInput
from tenants.models import Tenant
from tenants.resolution import resolve_tenant


class RelayView(APIView):
    authentication_classes = [TokenAuthentication, SessionAuthentication]
    permission_classes = [AllowAny]  # checked below: internal secret or a tenant user

    def _tenant_allowed(self, request, tenant_id: int) -> None:
        secret = request.headers.get("X-Internal-Secret")
        if secret is not None:
            expected = settings.INTERNAL_SECRET_KEY
            if not expected or not hmac.compare_digest(secret.encode(), expected.encode()):
                raise exceptions.AuthenticationFailed("X-Internal-Secret is wrong.")
            if not Tenant.objects.filter(pk=tenant_id, is_active=True).exists():
                raise exceptions.NotFound(f"Tenant {tenant_id} not found or inactive")
            return
        if not request.user or not request.user.is_authenticated:
            raise exceptions.NotAuthenticated("Send X-Internal-Secret or a tenant user's token.")
        if resolve_tenant(request.user.pk) != tenant_id:
            raise exceptions.PermissionDenied("tenant_id is not the tenant of this user.")

    def post(self, request):
        data = RelayInput(data=request.data)
        data.is_valid(raise_exception=True)
        values = data.validated_data
        self._tenant_allowed(request, values["tenant_id"])
        user = request.user if request.user and request.user.is_authenticated else None
        try:
            messages = services.relay_message(
                tenant_id=values["tenant_id"], to=values.get("to") or "", text=values["text"],
                provider=values["provider"], channel_source=values["channel_source"],
                conversation_id=values.get("conversation_id"), role=Role.HUMAN if user else Role.AGENT, sent_by=user,
            )
        except services.NotFound as exc:
            raise exceptions.NotFound(str(exc)) from None
        except services.MessagingError as exc:
            raise exceptions.ValidationError({"detail": str(exc)}) from None
        return Response(
            {"message_ids": [m.pk for m in messages], "conversation_id": messages[0].conversation_id if messages else None},
            status=status.HTTP_202_ACCEPTED,
        )
