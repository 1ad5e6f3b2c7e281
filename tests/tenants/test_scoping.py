"""The default manager fails closed; scopes are per task; rows never cross tenants."""

from __future__ import annotations

import asyncio

import pytest
from asgiref.sync import sync_to_async
from django.db import connections

from tenants.scoping import TenantScopeError, current_tenant_id, tenant_scope
from vault.models import Credential

pytestmark = pytest.mark.django_db


def _cred(tenant, name="API_KEY", category="openai", value="sk-aaaaaaaaaaaa"):
    return Credential.dangerously_unscoped.create(tenant=tenant, category=category, name=name, value=value)


@pytest.mark.parametrize(
    "query",
    [
        lambda: list(Credential.objects.all()),
        lambda: list(Credential.objects.filter(category="openai")),
        lambda: Credential.objects.get(pk=1),
        lambda: Credential.objects.count(),
        lambda: Credential.objects.exists(),
    ],
    ids=["all", "filter", "get", "count", "exists"],
)
def test_queries_outside_a_scope_raise(query, tenant_a):
    _cred(tenant_a)
    with pytest.raises(TenantScopeError, match="outside a tenant scope"):
        query()


def test_for_tenant_and_scope_see_only_their_rows(tenant_a, tenant_b):
    mine, theirs = _cred(tenant_a), _cred(tenant_b)
    assert list(Credential.objects.for_tenant(tenant_a.pk)) == [mine]
    with tenant_scope(tenant_b.pk):
        assert list(Credential.objects.all()) == [theirs]
        assert not Credential.objects.filter(pk=mine.pk).exists()
    assert current_tenant_id() is None


def test_for_tenant_none_raises():
    with pytest.raises(TenantScopeError):
        Credential.objects.for_tenant(None)


def test_create_inside_scope_fills_tenant(tenant_a):
    with tenant_scope(tenant_a.pk):
        cred = Credential.objects.create(category="google", name="API_KEY", value="g-key-123456789")
    assert cred.tenant_id == tenant_a.pk


def test_create_for_another_tenant_inside_scope_raises(tenant_a, tenant_b):
    with tenant_scope(tenant_a.pk), pytest.raises(TenantScopeError, match="Refusing to write"):
        Credential.objects.create(tenant=tenant_b, category="google", name="API_KEY", value="x" * 12)
    assert Credential.dangerously_unscoped.count() == 0


def test_create_without_scope_or_tenant_raises(db):
    with pytest.raises(TenantScopeError, match="no tenant"):
        Credential(category="google", name="API_KEY", value="x" * 12).save()


def test_rows_cannot_move_to_another_tenant(tenant_a, tenant_b):
    cred = _cred(tenant_a)
    loaded = Credential.objects.for_tenant(tenant_a.pk).get(pk=cred.pk)
    loaded.tenant = tenant_b
    with pytest.raises(TenantScopeError, match="cannot move"):
        loaded.save()
    with pytest.raises(TenantScopeError, match="moved"):
        Credential.objects.for_tenant(tenant_a.pk).update(tenant=tenant_b)
    assert Credential.dangerously_unscoped.get(pk=cred.pk).tenant_id == tenant_a.pk


def test_bulk_create_fills_and_checks_tenant(tenant_a, tenant_b):
    with tenant_scope(tenant_a.pk):
        Credential.objects.bulk_create([Credential(category="google", name="API_KEY", value="k" * 12)])
        with pytest.raises(TenantScopeError):
            Credential.objects.bulk_create([Credential(tenant=tenant_b, category="openai", name="API_KEY", value="k" * 12)])
    assert Credential.objects.for_tenant(tenant_a.pk).count() == 1


def test_scope_is_restored_after_an_exception(tenant_a):
    with pytest.raises(ZeroDivisionError):
        with tenant_scope(tenant_a.pk):
            1 / 0
    assert current_tenant_id() is None


@pytest.mark.django_db(transaction=True)
async def test_concurrent_tasks_never_see_each_others_scope(tenant_a, tenant_b):
    await sync_to_async(_cred)(tenant_a, value="sk-a-aaaaaaaaaa")
    await sync_to_async(_cred)(tenant_b, value="sk-b-bbbbbbbbbb")
    seen: dict[int, set] = {tenant_a.pk: set(), tenant_b.pk: set()}
    gate = asyncio.Event()

    async def work(tenant_id):
        with tenant_scope(tenant_id):
            await gate.wait()  # both tasks are inside their scopes at the same time
            for _ in range(5):
                assert current_tenant_id() == tenant_id
                rows = await sync_to_async(lambda: list(Credential.objects.values_list("tenant_id", flat=True)))()
                seen[tenant_id].update(rows)
                await asyncio.sleep(0)

    tasks = [asyncio.create_task(work(tenant_a.pk)), asyncio.create_task(work(tenant_b.pk))]
    await asyncio.sleep(0)
    gate.set()
    try:
        await asyncio.gather(*tasks)
    finally:
        await sync_to_async(connections.close_all)()
    assert seen == {tenant_a.pk: {tenant_a.pk}, tenant_b.pk: {tenant_b.pk}}
    assert current_tenant_id() is None


def test_related_managers_follow_the_parents_tenant(tenant_a, tenant_b):
    """conversation.messages works outside a scope (the parent constrains the rows), and inside
    another tenant's scope it shows nothing."""
    from tests.messaging.factories import conversation, message

    conv = conversation(tenant_a)
    mine = message(tenant_a, conversation=conv)
    assert list(conv.messages.all()) == [mine]
    with tenant_scope(tenant_a.pk):
        assert list(conv.messages.all()) == [mine]
    with tenant_scope(tenant_b.pk):
        assert list(conv.messages.all()) == []
