"""`{% integration_banners as lines %}`: problems staff should act on (admin index)."""

from django import template

from messaging.integrations.status import banners
from tenants.admin_base import is_platform_admin

register = template.Library()


@register.simple_tag(takes_context=True)
def integration_banners(context):
    request = context.get("request")
    if request is None or not request.user.is_authenticated:
        return []
    if is_platform_admin(request):
        return banners(None)
    tenant_id = getattr(request, "tenant_id", None)
    return banners([tenant_id]) if tenant_id else []
