from django.contrib import admin
from django.contrib.auth.admin import UserAdmin as DjangoUserAdmin
from django.http import Http404

from tenants.admin_base import PlatformAdminOnly, is_platform_admin, request_tenant_id
from tenants.models import Tenant, User


@admin.register(Tenant)
class TenantAdmin(PlatformAdminOnly):
    list_display = ("name", "slug", "is_active", "created_at")
    search_fields = ("name", "slug")
    prepopulated_fields = {"slug": ("name",)}


@admin.register(User)
class UserAdmin(DjangoUserAdmin):
    """Tenant staff manage their own tenant's users; only platform admins see every user."""

    list_display = ("username", "email", "tenant", "is_staff", "is_active")
    list_filter = ("is_staff", "is_active", "tenant")
    fieldsets = DjangoUserAdmin.fieldsets + (("Tenant", {"fields": ("tenant",)}),)

    def get_queryset(self, request):
        queryset = super().get_queryset(request)
        if is_platform_admin(request):
            return queryset
        return queryset.filter(tenant_id=request_tenant_id(request), is_superuser=False)

    def get_fieldsets(self, request, obj=None):
        fieldsets = super().get_fieldsets(request, obj)
        if is_platform_admin(request):
            return fieldsets
        hidden = {"tenant", "is_superuser", "groups", "user_permissions"}
        return [
            (title, {**opts, "fields": tuple(f for f in opts["fields"] if f not in hidden)})
            for title, opts in fieldsets
        ]

    def get_list_filter(self, request):
        return self.list_filter if is_platform_admin(request) else ("is_staff", "is_active")

    def save_model(self, request, obj, form, change):
        if not is_platform_admin(request):
            obj.tenant_id = request_tenant_id(request)
            obj.is_superuser = False
        super().save_model(request, obj, form, change)

    def _get_obj_does_not_exist_redirect(self, request, opts, object_id):
        raise Http404(f"User {object_id} not found or access denied")

    def _staff(self, request, obj=None):
        return request.user.is_active and request.user.is_staff and (
            is_platform_admin(request) or request_tenant_id(request) is not None
        )

    has_module_permission = _staff
    has_view_permission = has_change_permission = has_delete_permission = _staff

    def has_add_permission(self, request):
        return self._staff(request)
