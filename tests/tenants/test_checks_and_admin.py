"""System checks of the pre-deploy checklist, and the admin's tenant scoping."""

from __future__ import annotations

import ast

import pytest
from django.core.management import call_command
from django.test import Client

from tenants.checks import _reads_environment, check_no_environment_reads_in_apps, check_tenant_models_are_scoped
from vault import credentials as vault


def test_environment_reads_are_detected():
    source = "import os\nfrom os import getenv\nkey = os.environ['OPENAI_API_KEY']\nother = os.getenv('X')\n"
    assert _reads_environment(ast.parse(source)) == [2, 3, 4]
    assert _reads_environment(ast.parse("from django.conf import settings\nx = settings.DEBUG\n")) == []


def test_the_codebase_passes_its_own_checks(db, settings):
    settings.META_APP_SECRET = "configured"  # a deployment's setting, warned about on its own (messaging.W001)
    assert check_no_environment_reads_in_apps() == []
    assert check_tenant_models_are_scoped() == []
    call_command("check", "--database", "default", "--fail-level", "WARNING")


def test_unscoped_tenant_models_are_reported(settings):
    from django.db import models
    from django.test.utils import isolate_apps

    from tenants.models import Tenant

    with isolate_apps("tenants"):

        class Leaky(models.Model):
            tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE)

            class Meta:
                app_label = "tenants"

        from django.apps import apps as global_apps

        original = global_apps.get_models
        global_apps.get_models = lambda *a, **k: [Leaky]
        try:
            errors = check_tenant_models_are_scoped()
        finally:
            global_apps.get_models = original
    assert [e.id for e in errors] == ["tenants.E001"]
    assert "tenants.Leaky" in errors[0].msg


@pytest.mark.django_db
def test_tenant_staff_see_only_their_rows_and_platform_admins_see_all(tenant_a, tenant_b, user_a, platform_admin):
    vault.set_tenant_credential(tenant_a.pk, "google", "API_KEY", "g-aaaaaaaaaaaa")
    vault.set_tenant_credential(tenant_b.pk, "tiendanube", "STORE_ID", "998877")
    staff = Client()
    staff.force_login(user_a)
    html = staff.get("/admin/vault/credential/").content.decode()
    assert "google" in html and "998877" not in html and "tiendanube" not in html
    assert "?tenant__id__exact" not in html  # no tenant filter for tenant staff

    root = Client()
    root.force_login(platform_admin)
    html = root.get("/admin/vault/credential/").content.decode()
    assert "google" in html and "998877" in html and "tenant__id__exact" in html
    only_b = root.get(f"/admin/vault/credential/?tenant__id__exact={tenant_b.pk}").content.decode()
    assert "998877" in only_b and "g-a…" not in only_b


@pytest.mark.django_db
def test_tenant_staff_manage_only_their_users(tenant_a, tenant_b, user_a, user_b):
    staff = Client()
    staff.force_login(user_a)
    html = staff.get("/admin/tenants/user/").content.decode()
    assert "alice" in html and "bob" not in html
    assert staff.get(f"/admin/tenants/user/{user_b.pk}/change/").status_code == 404
    assert staff.get("/admin/tenants/tenant/").status_code == 403


@pytest.mark.django_db
def test_admin_index_and_login_render(user_a):
    assert Client().get("/admin/login/").status_code == 200
    staff = Client()
    staff.force_login(user_a)
    assert staff.get("/admin/").status_code == 200
