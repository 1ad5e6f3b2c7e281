"""Dashboard and /api/v1/metrics/: per tenant, all or one tenant for platform administrators."""

from __future__ import annotations

import pytest
from django.utils import timezone

from tests.staff.demo_data import seed_activity

pytestmark = pytest.mark.django_db


def test_metrics_api_counts_only_the_callers_tenant(api_a, api_b, tenant_a):
    seed_activity(tenant_a, days=3)
    today = timezone.now().date().isoformat()
    messages = api_a.get("/api/v1/metrics/messages/?days=3").json()
    assert messages["days"][-1] == today and len(messages["days"]) == 3
    assert sum(messages["series"]["in"]) + 1 == sum(messages["series"]["out"])  # + the failed one
    conversations = api_a.get("/api/v1/metrics/conversations/?days=3").json()
    assert set(conversations["series"]) <= {"whatsapp", "instagram", "facebook"}
    deliveries = api_a.get("/api/v1/metrics/deliveries/?days=3").json()
    assert deliveries["series"]["failed_messages"][-1] == 1 and deliveries["series"]["failed_attempts"][-1] == 1
    latency = api_a.get("/api/v1/metrics/turn-latency/?days=3").json()
    assert all(v and v >= 1800 for v in latency["series"]["average_ms"])
    assert deliveries["rows"][-1] == {"day": today, "failed_messages": 1, "failed_attempts": 1}
    empty = api_b.get("/api/v1/metrics/messages/?days=3").json()
    assert sum(empty["series"]["in"]) == 0


def test_metrics_api_rejects_a_bad_window(api_a):
    response = api_a.get("/api/v1/metrics/messages/?days=500")
    assert response.status_code == 400 and "days" in response.json()["detail"]


def test_dashboard_draws_every_chart_for_the_tenant(client, user_a, tenant_a):
    seed_activity(tenant_a, days=5)
    client.force_login(user_a)
    page = client.get("/admin/dashboard/?days=7").content.decode()
    for chart in ("conversations", "messages", "assistance", "score", "latency", "cost", "failures"):
        assert f'id="chart-{chart}"' in page
    assert page.count('<svg class="chart"') == 7 and "Conversations per channel per day" in page
    assert "whatsapp" in page and "sales" in page and "All tenants" not in page


def test_platform_admin_sees_all_tenants_or_one(client, platform_admin, tenant_a, tenant_b):
    seed_activity(tenant_a, days=2)
    client.force_login(platform_admin)
    everything = client.get("/admin/dashboard/").content.decode()
    assert "All tenants" in everything and "whatsapp" in everything
    only_b = client.get(f"/admin/dashboard/?tenant={tenant_b.pk}").content.decode()
    assert "whatsapp" not in only_b.split('id="chart-conversations"')[1].split("</figure>")[0]


def test_admin_index_links_to_the_staff_screens(client, user_a):
    client.force_login(user_a)
    page = client.get("/admin/").content.decode()
    for link in ("/admin/live/", "/admin/live/playground/", "/admin/dashboard/"):
        assert link in page


def test_dashboard_shows_the_delivery_queue_now(client, user_a, tenant_a, tenant_b, api_a, api_b):
    from datetime import timedelta

    from messaging.live.metrics import delivery_queue
    from messaging.models import ChatMessage
    from tests.messaging import factories

    now = timezone.now()
    conversation = factories.conversation(tenant_a)
    for status, attempts, slot in (("queued", 0, now), ("queued", 2, now - timedelta(minutes=5)),
                                   ("failed", 6, now - timedelta(hours=1)), ("sent", 1, now)):
        ChatMessage.objects.for_tenant(tenant_a.pk).create(
            tenant_id=tenant_a.pk, conversation=conversation, direction="out", role="agent", text="x",
            provider=conversation.provider, status=status, attempts=attempts, scheduled_at=slot)
    factories.conversation(tenant_b)
    figures = delivery_queue([tenant_a.pk], now=now)
    assert figures == {"waiting": 2, "retrying": 1, "overdue": 1, "oldest_late_seconds": 300, "failed": 1}
    assert delivery_queue([tenant_b.pk], now=now) == {
        "waiting": 0, "retrying": 0, "overdue": 0, "oldest_late_seconds": 0, "failed": 0}
    client.force_login(user_a)
    page = client.get("/admin/dashboard/").content.decode()
    queue = page.split('id="delivery-queue"')[1].split("</section>")[0]
    assert "<strong>2</strong>" in queue and "(oldest 3" in queue  # 300 s and a little more by now
    assert "?delivery=failed" in queue and "?delivery=queued" in queue
    assert api_a.get("/api/v1/metrics/delivery-queue/").json()["waiting"] == 2
    assert api_b.get("/api/v1/metrics/delivery-queue/").json()["waiting"] == 0
