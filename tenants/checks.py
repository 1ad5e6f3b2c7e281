"""System checks that automate the pre-deploy checklist (`manage.py check`)."""

from __future__ import annotations

import ast
from pathlib import Path

from django.apps import apps
from django.conf import settings
from django.core.checks import Error, register

APP_MODULES = ("tenants", "vault", "agents", "templates", "rag", "messaging")


@register("tenancy")
def check_tenant_models_are_scoped(app_configs=None, **kwargs):
    from tenants.models import Tenant, TenantScopedModel

    errors = []
    for model in apps.get_models():
        if model._meta.abstract or model._meta.proxy:
            continue
        has_tenant_fk = any(
            getattr(field, "related_model", None) is Tenant and field.many_to_one
            for field in model._meta.get_fields()
            if field.concrete
        )
        if has_tenant_fk and not issubclass(model, TenantScopedModel) and not getattr(model, "tenant_scope_exempt", None):
            errors.append(
                Error(
                    f"{model._meta.label} has a tenant foreign key but is not a TenantScopedModel.",
                    hint="Inherit from tenants.models.TenantScopedModel, or set tenant_scope_exempt = '<why>'.",
                    obj=model,
                    id="tenants.E001",
                )
            )
    return errors


def _reads_environment(tree: ast.AST) -> list[int]:
    lines = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "os":
            if node.attr in {"environ", "getenv", "putenv"}:
                lines.append(node.lineno)
        elif isinstance(node, ast.ImportFrom) and node.module == "os":
            if any(alias.name in {"environ", "getenv"} for alias in node.names):
                lines.append(node.lineno)
    return lines


@register("security")
def check_no_environment_reads_in_apps(app_configs=None, **kwargs):
    """Provider keys come from the vault; configuration from settings. Apps never read os.environ."""
    errors = []
    base = Path(settings.BASE_DIR)
    for app in APP_MODULES:
        for path in sorted((base / app).rglob("*.py")):
            if "tests" in path.parts or "migrations" in path.parts:
                continue
            try:
                tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
            except SyntaxError:
                continue
            for line in _reads_environment(tree):
                errors.append(
                    Error(
                        f"{path.relative_to(base)}:{line} reads the process environment.",
                        hint="Tenant keys come from vault.credentials; configuration from settings (django-environ).",
                        id="tenants.E002",
                    )
                )
    return errors
