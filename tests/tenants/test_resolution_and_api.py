"""Tenant resolution from the users table, the API base, error shape, health and docs."""

from __future__ import annotations

import logging

import pytest
from django.db import DatabaseError
from django.test import Client
from rest_framework.test import APIClient

from tenants.resolution import TenantInactive, TenantNotAssigned, resolve_tenant
from tenants.scoping import current_tenant_id
from tests.conftest import token_client

pytestmark = pytest.mark.django_db


def test_resolve_tenant_reads_the_users_table(user_a, tenant_a, platform_admin):
    assert resolve_tenant(user_a.pk) == tenant_a.pk
    with pytest.raises(TenantNotAssigned):
        resolve_tenant(platform_admin.pk)


def test_inactive_tenant_is_refused_with_a_clear_message(user_a, tenant_a, api_a):
    tenant_a.is_active = False
    tenant_a.save()
    with pytest.raises(TenantInactive, match="shop-a.*inactive"):
        resolve_tenant(user_a.pk)
    response = api_a.get("/api/v1/me/")
    assert response.status_code == 403
    assert "inactive" in response.json()["detail"]


def test_me_ignores_tenant_hints_in_headers_query_and_body(api_a, tenant_a, tenant_b):
    response = api_a.get(f"/api/v1/me/?tenant_id={tenant_b.pk}", HTTP_X_TENANT_ID=str(tenant_b.pk))
    assert response.status_code == 200
    assert response.json()["tenant"]["id"] == tenant_a.pk


def test_token_auth_endpoint(user_a):
    client = APIClient()
    response = client.post("/api/v1/auth/token/", {"username": "alice", "password": "pw-alice"}, format="json")
    assert response.status_code == 200 and response.json()["token"]
    bad = client.post("/api/v1/auth/token/", {"username": "alice", "password": "nope"}, format="json")
    assert bad.status_code == 400
    assert set(bad.json()) >= {"detail", "code"}


def test_unauthenticated_requests_get_the_error_shape(db):
    response = APIClient().get("/api/v1/credentials/")
    assert response.status_code in (401, 403)
    assert set(response.json()) >= {"detail", "code"}


def test_platform_admin_cannot_use_tenant_endpoints(platform_admin):
    response = token_client(platform_admin).get("/api/v1/credentials/")
    assert response.status_code == 403
    assert "belongs to a tenant" in response.json()["detail"]


def test_scope_is_reset_after_every_request(api_a):
    assert api_a.get("/api/v1/credentials/").status_code == 200
    assert current_tenant_id() is None


def test_unhandled_errors_answer_500_with_a_generic_message(api_a, monkeypatch, caplog):
    from vault.api import CredentialViewSet

    def boom(self, request, *args, **kwargs):
        raise RuntimeError("database exploded with secret details")

    monkeypatch.setattr(CredentialViewSet, "list", boom)
    with caplog.at_level(logging.ERROR):
        response = api_a.get("/api/v1/credentials/")
    assert response.status_code == 500
    assert response.json() == {"detail": "Internal server error; it has been logged.", "code": "server_error"}
    assert "secret details" not in response.content.decode()
    assert any("Unhandled error" in r.message and r.exc_info for r in caplog.records)


def test_healthz_reports_the_database(db, monkeypatch):
    response = Client().get("/healthz")
    assert response.status_code == 200
    assert response.json()["database"] == "ok"

    import platform_ai.views as views

    class Broken:
        def cursor(self):
            raise DatabaseError("connection refused")

    monkeypatch.setattr(views, "connection", Broken())
    down = Client().get("/healthz")
    assert down.status_code == 503
    assert down.json() == {"status": "error", "database": "unavailable"}


def test_openapi_schema_and_docs(db):
    client = Client()
    schema = client.get("/api/schema/")
    assert schema.status_code == 200
    assert b"/api/v1/credentials/" in schema.content
    assert client.get("/api/docs/").status_code == 200


def test_per_tenant_throttle(api_a, settings):
    from rest_framework.settings import api_settings
    from rest_framework.throttling import SimpleRateThrottle

    from tenants.throttling import TenantRateThrottle

    original = SimpleRateThrottle.THROTTLE_RATES
    TenantRateThrottle.THROTTLE_RATES = {**api_settings.DEFAULT_THROTTLE_RATES, "tenant": "3/min"}
    try:
        from django.core.cache import cache

        cache.clear()
        codes = [api_a.get("/api/v1/me/").status_code for _ in range(4)]
    finally:
        TenantRateThrottle.THROTTLE_RATES = original
        cache.clear()
    assert codes == [200, 200, 200, 429]


def test_admin_static_files_are_served(db):
    response = Client().get("/static/admin/css/base.css")
    assert response.status_code == 200
