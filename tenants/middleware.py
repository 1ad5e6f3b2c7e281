"""Enters the tenant scope of the logged-in (session) user for the whole request."""

from __future__ import annotations

from django.http import JsonResponse

from tenants.resolution import TenantInactive, TenantNotAssigned, resolve_tenant
from tenants.scoping import tenant_scope


class TenantScopeMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        request.tenant_id = None
        user = getattr(request, "user", None)
        if user is None or not user.is_authenticated:
            return self.get_response(request)
        try:
            request.tenant_id = resolve_tenant(user.pk)
        except TenantNotAssigned:
            return self.get_response(request)  # platform administrators work unscoped, explicitly
        except TenantInactive as exc:
            return JsonResponse({"detail": str(exc), "code": "tenant_inactive"}, status=403)
        with tenant_scope(request.tenant_id):
            return self.get_response(request)
