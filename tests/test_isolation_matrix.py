"""Tenant A's staff never reaches tenant B's rows: 404 on every id route, B's row unchanged."""

from __future__ import annotations

import re

import pytest
from django.contrib import admin
from django.forms.models import model_to_dict
from django.test import Client

from tenants.models import TenantScopedModel
from tests.isolation import id_routes, isolation_factories

pytestmark = pytest.mark.django_db

ROUTES = list(id_routes())


def _fill(route: str, pattern, pk) -> str:
    path = route
    for name in pattern.pattern.regex.groupindex:
        path = re.sub(r"\(\?P<%s>[^)]*\)" % name, str(pk), path)
        path = re.sub(r"<(?:\w+:)?%s>" % name, str(pk), path)
    return "/" + path.replace("^", "").replace("$", "").replace("\\.", ".")


def _snapshot(obj):
    obj = type(obj).dangerously_unscoped.get(pk=obj.pk)
    return model_to_dict(obj)


def test_every_id_route_has_a_model_and_a_factory():
    factories = isolation_factories()
    assert ROUTES, "no id routes discovered"
    missing = [
        f"{route} ({cls.__name__ if cls else '?'})"
        for route, _, cls, model, _ in ROUTES
        if model is None or model not in factories
    ]
    assert not missing, (
        "Routes that take an object id without an isolation factory (declare `model` on the view "
        f"and add ISOLATION_FACTORIES in tests/<app>/factories.py): {missing}"
    )


@pytest.mark.parametrize("route,pattern,cls,model,actions", ROUTES, ids=[r[0] for r in ROUTES])
def test_other_tenants_ids_answer_404(route, pattern, cls, model, actions, tenant_b, api_a):
    factory = isolation_factories()[model]
    victim = factory(tenant_b)
    before = _snapshot(victim)
    path = _fill(route, pattern, victim.pk)
    for method in list(actions):
        if method not in {"get", "put", "patch", "delete", "post"}:
            continue
        response = getattr(api_a, method)(path, {}, format="json")
        assert response.status_code == 404, f"{method.upper()} {path} answered {response.status_code}"
        body = response.json()
        assert body["code"] == "not_found"
        assert "not found or access denied" in body["detail"]
    assert _snapshot(victim) == before, f"{model.__name__} of tenant B changed through {route}"


SCOPED_ADMINS = [
    (model, model_admin) for model, model_admin in admin.site._registry.items() if issubclass(model, TenantScopedModel)
]


@pytest.mark.parametrize("model,model_admin", SCOPED_ADMINS, ids=[m._meta.label for m, _ in SCOPED_ADMINS])
def test_admin_pages_of_other_tenants_rows_answer_404(model, model_admin, tenant_b, user_a):
    factories = isolation_factories()
    assert model in factories, f"add an isolation factory for {model._meta.label}"
    victim = factories[model](tenant_b)
    before = _snapshot(victim)
    client = Client()
    client.force_login(user_a)
    base = f"/admin/{model._meta.app_label}/{model._meta.model_name}/"
    changelist = client.get(base)
    assert changelist.status_code == 200
    assert f"/{victim.pk}/change/" not in changelist.content.decode()
    for suffix in ("change/", "delete/", "history/"):
        assert client.get(f"{base}{victim.pk}/{suffix}").status_code == 404, suffix
    assert client.post(f"{base}{victim.pk}/change/", {}).status_code == 404
    assert client.post(f"{base}{victim.pk}/delete/", {"post": "yes"}).status_code == 404
    assert _snapshot(victim) == before


@pytest.mark.parametrize("model,model_admin", SCOPED_ADMINS, ids=[m._meta.label for m, _ in SCOPED_ADMINS])
def test_admin_foreign_key_choices_are_the_tenants_own(model, model_admin, tenant_a, tenant_b, user_a):
    """The add form offers only tenant A's rows for every FK to a tenant-scoped model."""
    factories = isolation_factories()
    fks = [
        f for f in model._meta.get_fields()
        if f.concrete and f.is_relation and f.many_to_one and isinstance(f.related_model, type)
        and issubclass(f.related_model, TenantScopedModel) and f.name != "tenant"
    ]
    if not fks:
        pytest.skip(f"{model._meta.label} has no foreign key to a tenant-scoped model")
    client = Client()
    client.force_login(user_a)
    for field in fks:
        mine = factories[field.related_model](tenant_a)
        theirs = factories[field.related_model](tenant_b)
        page = client.get(f"/admin/{model._meta.app_label}/{model._meta.model_name}/add/")
        assert page.status_code == 200
        html = page.content.decode()
        if f'name="{field.name}"' in html and "<select" in html:
            assert f'value="{theirs.pk}"' not in html or f'value="{mine.pk}"' in html and theirs.pk == mine.pk
