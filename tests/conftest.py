"""Shared fixtures: two tenants with staff users and API clients, on the embedded PostgreSQL."""

from __future__ import annotations

import pytest
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from tenants.models import Tenant, User
from vault.credentials import invalidate_cache


@pytest.fixture(autouse=True, scope="session")
def _fast_password_hasher():
    # Staff fixtures hash passwords; PBKDF2 costs ~1 s per user on a loaded 2-core machine.
    # Session-wide and before anything forks (the browser tests' server must verify them too).
    from django.conf import settings

    original = settings.PASSWORD_HASHERS
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher", *original]
    yield
    settings.PASSWORD_HASHERS = original


@pytest.fixture(autouse=True)
def _fresh_vault_cache():
    invalidate_cache()
    yield
    invalidate_cache()


def make_tenant(slug: str) -> Tenant:
    return Tenant.objects.create(name=slug.replace("-", " ").title(), slug=slug)


def make_staff(tenant: Tenant, username: str) -> User:
    return User.objects.create_user(username=username, password="pw-" + username, tenant=tenant, is_staff=True)


@pytest.fixture
def tenant_a(db):
    return make_tenant("shop-a")


@pytest.fixture
def tenant_b(db):
    return make_tenant("shop-b")


@pytest.fixture
def user_a(tenant_a):
    return make_staff(tenant_a, "alice")


@pytest.fixture
def user_b(tenant_b):
    return make_staff(tenant_b, "bob")


@pytest.fixture
def platform_admin(db):
    return User.objects.create_superuser(username="root", password="pw-root", email="root@example.com")


def token_client(user: User) -> APIClient:
    client = APIClient()
    token, _ = Token.objects.get_or_create(user=user)
    client.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
    return client


@pytest.fixture
def api_a(user_a) -> APIClient:
    return token_client(user_a)


@pytest.fixture
def api_b(user_b) -> APIClient:
    return token_client(user_b)


@pytest.fixture
def smtp_server():
    """A local SMTP server (tests/smtp.py); `.envelopes` and `.messages` hold what it received."""
    from tests import smtp

    server, controller = smtp.start()
    yield server
    controller.stop()
