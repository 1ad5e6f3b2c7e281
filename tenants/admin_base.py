"""The base of every admin page over tenant-owned rows.

Tenant staff see and edit only their tenant's rows (foreign-key choices and autocompletes
included) and the tenant is set on save; platform superusers see everything, with a tenant
filter. Another tenant's object answers 404, not a redirect.
"""

from __future__ import annotations

from django.contrib import admin
from django.http import Http404

from tenants.models import TenantScopedModel


def is_platform_admin(request) -> bool:
    user = request.user
    return bool(user.is_active and user.is_superuser and user.tenant_id is None)


def request_tenant_id(request) -> int | None:
    return getattr(request, "tenant_id", None)


def scoped_queryset_for(model, request):
    """The rows of `model` this admin request may see."""
    if is_platform_admin(request):
        return model.dangerously_unscoped.all()
    tenant_id = request_tenant_id(request)
    if tenant_id is None:
        return model.dangerously_unscoped.none()
    return model.objects.for_tenant(tenant_id)


class PlatformAdminOnly(admin.ModelAdmin):
    """Rows that belong to no tenant (tenants themselves, the webhook inbox): platform admins
    only. Subclasses narrow what may be added, changed or deleted."""

    def has_module_permission(self, request):
        return is_platform_admin(request)

    def has_view_permission(self, request, obj=None):
        return is_platform_admin(request)

    def has_add_permission(self, request):
        return is_platform_admin(request)

    def has_change_permission(self, request, obj=None):
        return is_platform_admin(request)

    def has_delete_permission(self, request, obj=None):
        return is_platform_admin(request)


class TenantScopedAdmin(admin.ModelAdmin):
    def get_queryset(self, request):
        queryset = scoped_queryset_for(self.model, request)
        ordering = self.get_ordering(request)
        return queryset.order_by(*ordering) if ordering else queryset

    def get_list_filter(self, request):
        filters = tuple(super().get_list_filter(request))
        return (("tenant", *filters) if is_platform_admin(request) else filters)

    def get_list_display(self, request):
        display = tuple(super().get_list_display(request))
        return (*display, "tenant") if is_platform_admin(request) and "tenant" not in display else display

    def get_exclude(self, request, obj=None):
        exclude = tuple(super().get_exclude(request, obj) or ())
        return exclude if is_platform_admin(request) else (*exclude, "tenant")

    def get_readonly_fields(self, request, obj=None):
        readonly = tuple(super().get_readonly_fields(request, obj))
        return (*readonly, "tenant") if is_platform_admin(request) and obj is not None else readonly

    def save_model(self, request, obj, form, change):
        if not is_platform_admin(request):
            obj.tenant_id = request_tenant_id(request)
        super().save_model(request, obj, form, change)

    def save_formset(self, request, form, formset, change):
        for obj in formset.save(commit=False):
            if isinstance(obj, TenantScopedModel) and obj.tenant_id is None:
                obj.tenant_id = form.instance.tenant_id
            obj.save()
        for obj in formset.deleted_objects:
            obj.delete()
        formset.save_m2m()

    def _related_queryset(self, related_model, request):
        if isinstance(related_model, type) and issubclass(related_model, TenantScopedModel):
            return scoped_queryset_for(related_model, request)
        return None

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        queryset = self._related_queryset(db_field.related_model, request)
        if queryset is not None:
            kwargs["queryset"] = queryset
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    def formfield_for_manytomany(self, db_field, request, **kwargs):
        queryset = self._related_queryset(db_field.related_model, request)
        if queryset is not None:
            kwargs["queryset"] = queryset
        return super().formfield_for_manytomany(db_field, request, **kwargs)

    def _get_obj_does_not_exist_redirect(self, request, opts, object_id):
        raise Http404(f"{opts.verbose_name.capitalize()} {object_id} not found or access denied")

    def _has_tenant_access(self, request) -> bool:
        user = request.user
        return bool(user.is_active and user.is_staff and (is_platform_admin(request) or request_tenant_id(request)))

    def has_module_permission(self, request):
        return self._has_tenant_access(request)

    def has_view_permission(self, request, obj=None):
        return self._has_tenant_access(request)

    def has_add_permission(self, request):
        return self._has_tenant_access(request)

    def has_change_permission(self, request, obj=None):
        return self._has_tenant_access(request)

    def has_delete_permission(self, request, obj=None):
        return self._has_tenant_access(request)


class TenantScopedInline(admin.TabularInline):
    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        model = db_field.related_model
        if isinstance(model, type) and issubclass(model, TenantScopedModel):
            kwargs["queryset"] = scoped_queryset_for(model, request)
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    def get_queryset(self, request):
        return scoped_queryset_for(self.model, request)

    def has_view_permission(self, request, obj=None):
        return request.user.is_active and request.user.is_staff

    has_change_permission = has_add_permission = has_delete_permission = has_view_permission
