"""Admin: "Add agent from template" (a proxy over Agent; the agent is created by the template service)."""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages

from agents.catalog import CATALOG
from agents.services import AgentConfigError
from templates.catalogue import TEMPLATES, create_agent_from_template
from templates.models import AgentFromTemplate
from tenants.admin_base import TenantScopedAdmin, is_platform_admin, request_tenant_id
from vault.credentials import CredentialNotConfigured


class FromTemplateForm(forms.ModelForm):
    template = forms.ChoiceField(choices=[(k, f"{t.label}: {t.description}") for k, t in TEMPLATES.items()])
    model_version = forms.ChoiceField(choices=[(k, m.label) for k, m in CATALOG.items()])
    name = forms.CharField(max_length=120, required=False, help_text="Defaults to the template's name.")

    class Meta:
        model = AgentFromTemplate
        fields = ["tenant", "template", "name", "model_version", "synonyms"]

    tenant_id: int | None = None
    created = None

    def clean(self):
        cleaned = super().clean()
        tenant_id = self.tenant_id or (cleaned["tenant"].pk if cleaned.get("tenant") else None)
        if tenant_id is None or not cleaned.get("template") or self._errors:
            return cleaned
        try:
            self.created = create_agent_from_template(
                tenant_id=tenant_id, template_key=cleaned["template"], name=cleaned.get("name") or None,
                model_version=cleaned.get("model_version"), synonyms=cleaned.get("synonyms") or None,
            )
        except AgentConfigError as exc:
            raise forms.ValidationError(f"{exc.field}: {exc.message}") from None
        except CredentialNotConfigured as exc:
            raise forms.ValidationError(f"{exc.public_message}: store the key under Vault > Credentials first.")
        return cleaned


@admin.register(AgentFromTemplate)
class AgentFromTemplateAdmin(TenantScopedAdmin):
    """The add page creates through the template service; existing agents are edited under Agents."""

    form = FromTemplateForm
    list_display = ("name", "role", "model_version", "is_active")

    def get_form(self, request, obj=None, **kwargs):
        if obj is not None:  # existing agents are shown read-only here
            kwargs["form"] = forms.ModelForm
        form = super().get_form(request, obj, **kwargs)
        form.tenant_id = None if is_platform_admin(request) else request_tenant_id(request)
        return form

    def has_change_permission(self, request, obj=None):
        # True only without an object: "not yours" stays a 404, yours is view-only here.
        return obj is None and super().has_change_permission(request, obj)

    def save_model(self, request, obj, form, change):
        created = form.created
        obj.pk, obj.tenant_id = created.pk, created.tenant_id
        obj._state.adding = False
        messages.info(request, f"Agent {created.name} created from the template; edit it under Agents.")
