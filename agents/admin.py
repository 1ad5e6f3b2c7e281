"""Admin pages: agents (validated like the API), tools (global read-only for tenants), turns, reports."""

from __future__ import annotations

from django import forms
from django.contrib import admin
from django.core.exceptions import PermissionDenied

from agents.catalog import CATALOG
from agents.models import Agent, AgentTurn, AssistanceReport, Tool
from agents.selectors import tools_for_tenant
from agents.services import AgentConfigError, validate_agent_config
from tenants.admin_base import TenantScopedAdmin, is_platform_admin, request_tenant_id
from vault.credentials import CredentialNotConfigured


class AgentAdminForm(forms.ModelForm):
    model_version = forms.ChoiceField(choices=[(k, m.label) for k, m in CATALOG.items()])

    class Meta:
        model = Agent
        fields = "__all__"

    tenant_id: int | None = None  # set by AgentAdmin.get_form for tenant staff

    def clean(self):
        cleaned = super().clean()
        tenant_id = self.tenant_id or (cleaned.get("tenant").pk if cleaned.get("tenant") else None)
        if tenant_id is None or "model_version" not in cleaned:
            return cleaned
        instance = self.instance
        needs_key = instance.pk is None or "model_version" in self.changed_data or (
            "is_active" in self.changed_data and cleaned.get("is_active")
        )
        try:
            values = validate_agent_config(
                tenant_id=tenant_id, model_version=cleaned["model_version"], temperature=cleaned.get("temperature"),
                enabled_tools=cleaned.get("enabled_tools") or [], channels=cleaned.get("channels") or [],
                synonyms=cleaned.get("synonyms") or {}, require_credentials=needs_key,
            )
        except AgentConfigError as exc:
            self.add_error(exc.field if exc.field in self.fields else None, exc.message)
            return cleaned
        except CredentialNotConfigured as exc:
            raise forms.ValidationError(f"{exc.public_message}: store the key under Vault > Credentials first.")
        cleaned.update(values)
        return cleaned


@admin.register(Agent)
class AgentAdmin(TenantScopedAdmin):
    form = AgentAdminForm
    list_display = ("name", "role", "model_version", "is_active", "created_at")
    list_filter = ("role", "model_provider", "is_active")
    search_fields = ("name",)
    readonly_fields = ("model_provider", "created_at", "updated_at")

    def save_model(self, request, obj, form, change):
        obj.model_provider = CATALOG[obj.model_version].provider
        super().save_model(request, obj, form, change)

    def get_form(self, request, obj=None, **kwargs):
        form = super().get_form(request, obj, **kwargs)
        form.tenant_id = None if is_platform_admin(request) else request_tenant_id(request)
        return form


class RuntimeWrittenAdmin(TenantScopedAdmin):
    """Rows only the runtime writes. Every field is read-only; saving from the admin is refused.

    The add page still renders (read-only) because the isolation matrix inspects every scoped
    admin's add form; a POST to it is refused.
    """

    def get_readonly_fields(self, request, obj=None):
        return [f.name for f in self.model._meta.fields if f.name != "tenant"] + list(
            super().get_readonly_fields(request, obj)
        )

    def add_view(self, request, form_url="", extra_context=None):
        if request.method == "POST":
            raise PermissionDenied(f"{self.model._meta.verbose_name_plural.capitalize()} are written by the runtime.")
        return super().add_view(request, form_url, extra_context)

    def has_change_permission(self, request, obj=None):
        # Answering True only without an object keeps "not yours" a 404 instead of a 403.
        return obj is None and super().has_change_permission(request, obj)


@admin.register(AgentTurn)
class AgentTurnAdmin(RuntimeWrittenAdmin):
    list_display = ("id", "agent", "conversation_id", "ok", "input_tokens", "output_tokens", "cost", "latency_ms",
                    "created_at")
    list_filter = ("ok",)
    list_select_related = ("agent",)


@admin.register(AssistanceReport)
class AssistanceReportAdmin(TenantScopedAdmin):
    list_display = ("id", "agent", "type", "score", "conversation_id", "created_at")
    list_filter = ("type",)
    list_select_related = ("agent",)


@admin.register(Tool)
class ToolAdmin(admin.ModelAdmin):
    """Tenant staff see global tools (read-only) and manage their own; superusers see all."""

    list_display = ("name", "type", "scope", "updated_at")
    search_fields = ("name",)

    @admin.display(description="Scope")
    def scope(self, obj):
        return "global" if obj.tenant_id is None else "tenant"

    def get_queryset(self, request):
        if is_platform_admin(request):
            return Tool.dangerously_unscoped.all()
        tenant_id = request_tenant_id(request)
        return tools_for_tenant(tenant_id) if tenant_id else Tool.dangerously_unscoped.none()

    def get_exclude(self, request, obj=None):
        return () if is_platform_admin(request) else ("tenant",)

    def save_model(self, request, obj, form, change):
        if not is_platform_admin(request):
            obj.tenant_id = request_tenant_id(request)
        super().save_model(request, obj, form, change)

    def _staff(self, request) -> bool:
        return bool(request.user.is_active and request.user.is_staff and
                    (is_platform_admin(request) or request_tenant_id(request)))

    def _may_edit(self, request, obj) -> bool:
        return self._staff(request) and (is_platform_admin(request) or obj is None or obj.tenant_id is not None)

    def has_module_permission(self, request):
        return self._staff(request)

    def has_view_permission(self, request, obj=None):
        return self._staff(request)

    def has_add_permission(self, request):
        return self._staff(request)

    def has_change_permission(self, request, obj=None):
        return self._may_edit(request, obj)

    def has_delete_permission(self, request, obj=None):
        return self._may_edit(request, obj)

    def _get_obj_does_not_exist_redirect(self, request, opts, object_id):
        from django.http import Http404

        raise Http404(f"Tool {object_id} not found or access denied")
