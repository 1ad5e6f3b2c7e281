from django import forms
from django.contrib import admin

from tenants.admin_base import TenantScopedAdmin
from vault import credentials as vault
from vault.models import Credential
from vault.schemas import CATEGORY_SCHEMAS, UnknownCredential, check_value, validate_name


class CredentialForm(forms.ModelForm):
    """The stored value is never rendered; a new one is typed write-only."""

    category = forms.ChoiceField(choices=[(c, c) for c in sorted(CATEGORY_SCHEMAS)])
    new_value = forms.CharField(
        label="Value", required=False, strip=True,
        widget=forms.PasswordInput(render_value=False),
        help_text="Write-only. Leave empty to keep the current value.",
    )

    class Meta:
        model = Credential
        fields = ["category", "name", "expires_at"]

    def clean_new_value(self):
        value = self.cleaned_data.get("new_value")
        try:
            return check_value(value) if value else value
        except ValueError as exc:
            raise forms.ValidationError(str(exc)) from None

    def clean(self):
        cleaned = super().clean()
        try:
            validate_name(cleaned.get("category"), cleaned.get("name"))
        except UnknownCredential as exc:
            self.add_error("name", str(exc))
        if not self.instance.pk and not cleaned.get("new_value"):
            self.add_error("new_value", "A value is required.")
        return cleaned

    def save(self, commit=True):
        if self.cleaned_data.get("new_value"):
            self.instance.value = self.cleaned_data["new_value"]
        return super().save(commit=commit)


@admin.register(Credential)
class CredentialAdmin(TenantScopedAdmin):
    form = CredentialForm
    list_display = ("category", "name", "masked_value", "expires_at", "disabled_at", "updated_at", "last_used_at")
    list_filter = ("category",)
    search_fields = ("category", "name")
    readonly_fields = ("masked_value", "updated_at", "last_used_at", "disabled_at")

    def save_model(self, request, obj, form, change):
        super().save_model(request, obj, form, change)
        vault.invalidate_cache(obj.tenant_id)
