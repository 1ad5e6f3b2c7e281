"""Without META_APP_SECRET every Meta delivery is refused (401): `manage.py check` warns, and the
admin tells the staff of tenants with a Meta channel (and the platform admin) why nothing arrives."""

from __future__ import annotations

import pytest
from django.core.management import call_command

from messaging import checks
from messaging.integrations import status
from tests.messaging import factories

pytestmark = pytest.mark.django_db


def test_the_system_check_warns_only_without_the_secret(settings):
    settings.META_APP_SECRET = "x"
    assert checks.check_meta_app_secret() == []
    settings.META_APP_SECRET = ""
    [warning] = checks.check_meta_app_secret()
    assert warning.id == "messaging.W001" and "401" in warning.msg


def test_the_system_check_warns_without_an_internal_secret(settings):
    settings.INTERNAL_SECRET_KEY = "internal-123"
    assert checks.check_internal_secret() == []
    settings.INTERNAL_SECRET_KEY = ""
    [warning] = checks.check_internal_secret()
    assert warning.id == "messaging.W002" and "/messages/relay" in warning.msg


def test_check_command_prints_the_warning(settings, capsys):
    settings.META_APP_SECRET = ""
    call_command("check")
    assert "messaging.W001" in capsys.readouterr().err


def test_staff_of_a_tenant_with_a_meta_channel_see_why_nothing_arrives(settings, client, user_a, user_b, tenant_a,
                                                                        tenant_b, wa_binding):
    factories.binding(tenant_b, provider="ycloud", channel_source="whatsapp", external_id="+15550001111")
    settings.META_APP_SECRET = ""
    client.force_login(user_a)
    assert "the platform has no META_APP_SECRET" in client.get("/admin/").content.decode()
    client.force_login(user_b)  # no Meta channel: nothing to say
    assert "META_APP_SECRET" not in client.get("/admin/").content.decode()
    assert status.banners(None)[0].startswith(f"Tenants {tenant_a.pk}: ")  # the platform admin's view

    settings.META_APP_SECRET = "configured"
    assert status.banners([tenant_a.pk]) == []


def test_an_inactive_meta_channel_is_not_a_reason_to_warn(settings, tenant_a, wa_binding):
    settings.META_APP_SECRET = ""
    wa_binding.is_active = False
    wa_binding.save()
    assert status.banners([tenant_a.pk]) == []
