"""Per-tenant API throttling: one budget per tenant, shared by all its users and tokens."""

from rest_framework.throttling import SimpleRateThrottle


class TenantRateThrottle(SimpleRateThrottle):
    scope = "tenant"

    def get_cache_key(self, request, view):
        tenant_id = getattr(view, "tenant_id", None) or getattr(request, "tenant_id", None)
        if tenant_id is None:
            return None
        return self.cache_format % {"scope": self.scope, "ident": f"tenant-{tenant_id}"}
