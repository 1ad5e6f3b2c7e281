"""Tienda Nube customers/data_request: the export reaches the shop, mailed through its own SMTP
(a job) and downloadable by its staff in the admin; never by another shop."""

from __future__ import annotations

import json

import pytest
from procrastinate.contrib.django.models import ProcrastinateJob

from messaging.integrations import privacy
from tests.messaging import factories
from tests.staff.test_tiendanube import _tiendanube_settings, connected, post_webhook  # noqa: F401 (fixtures)
from vault.credentials import set_tenant_credential

pytestmark = pytest.mark.django_db

REQUEST = {"store_id": 1234567, "event": "customers/data_request",
           "customer": {"id": 1, "email": "ana@example.com", "phone": "+54 9 11 5555-0001"},
           "orders_requested": [10], "data_request": {"id": 456}}


def _smtp(tenant, server, **extra):
    for name, value in server.credentials(FROM="bot@shop.test", **extra).items():
        set_tenant_credential(tenant.pk, "smtp", name, value)


def _customer_conversation(tenant):
    conversation = factories.conversation(tenant, contact_external_id="5491155550001", contact_name="Ana")
    factories.message(tenant, conversation=conversation, direction="in", role="customer", text="hola", status="received")


def test_the_export_is_mailed_to_the_shops_privacy_address(client, connected, smtp_server,
                                                           django_capture_on_commit_callbacks):
    _smtp(connected, smtp_server, PRIVACY_TO="privacy@shop.test", HANDOFF_TO="humans@shop.test")
    _customer_conversation(connected)
    with django_capture_on_commit_callbacks(execute=True):
        assert post_webhook(client, REQUEST).status_code == 200
    with django_capture_on_commit_callbacks(execute=True):  # Tienda Nube delivers it again
        assert post_webhook(client, REQUEST).status_code == 200
    job = ProcrastinateJob.objects.get(task_name="messaging.send_privacy_export")  # one mail, one file
    assert job.args == {"tenant_id": connected.pk, "name": "data-request-456.json"} and job.queue_name == "mail"
    assert [e.name for e in privacy.list_exports(connected.pk)] == ["data-request-456.json"]

    assert privacy.email_export(**job.args) == "sent"
    [envelope] = smtp_server.envelopes
    assert envelope.rcpt_tos == ["privacy@shop.test"]
    [mail] = smtp_server.messages
    [attachment] = [part for part in mail.walk() if part.get_filename()]
    assert attachment.get_filename() == "data-request-456.json"
    export = json.loads(attachment.get_payload(decode=True))
    assert export["conversations"][0]["messages"][0]["text"] == "hola"


def test_without_a_privacy_address_the_handoff_address_gets_it(connected, smtp_server):
    _smtp(connected, smtp_server, HANDOFF_TO="humans@shop.test")
    _customer_conversation(connected)
    privacy.export_customer(tenant_id=connected.pk, customer=REQUEST["customer"], request_id=7)
    assert privacy.email_export(tenant_id=connected.pk, name="data-request-7.json") == "sent"
    assert smtp_server.envelopes[0].rcpt_tos == ["humans@shop.test"]


def test_an_export_removed_before_its_mail_is_not_retried(connected, smtp_server):
    _smtp(connected, smtp_server, HANDOFF_TO="humans@shop.test")
    assert privacy.email_export(tenant_id=connected.pk, name="data-request-404.json") == "export no longer exists"
    assert smtp_server.envelopes == []


def test_without_smtp_nothing_is_queued_and_staff_are_told_to_download_it(connected, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        outcome = privacy.export_customer(tenant_id=connected.pk, customer=REQUEST["customer"], request_id=8)
    assert "download it in the admin" in outcome
    assert not ProcrastinateJob.objects.filter(task_name="messaging.send_privacy_export").exists()


def test_staff_download_their_shops_exports_and_no_other_shops(client, connected, user_a, user_b, platform_admin):
    _customer_conversation(connected)
    privacy.export_customer(tenant_id=connected.pk, customer=REQUEST["customer"], request_id=456)

    client.force_login(user_a)
    page = client.get("/admin/privacy/").content.decode()
    assert "data-request-456.json" in page and "/admin/privacy/data-request-456.json" in page
    response = client.get("/admin/privacy/data-request-456.json")
    assert response.status_code == 200 and "attachment" in response["Content-Disposition"]
    assert json.loads(b"".join(response.streaming_content))["customer"]["id"] == 1
    assert client.get("/admin/privacy/data-request-999.json").status_code == 404
    assert client.get("/admin/privacy/..%2F..%2Fsecret_key").status_code == 404

    client.force_login(user_b)  # another shop: not listed, and the same name is a 404
    assert "data-request-456.json" not in client.get("/admin/privacy/").content.decode()
    assert client.get("/admin/privacy/data-request-456.json").status_code == 404

    client.force_login(platform_admin)  # customers' data is the shop's to hand over
    assert client.get("/admin/privacy/").status_code == 403
    assert client.get("/admin/privacy/data-request-456.json").status_code == 404
