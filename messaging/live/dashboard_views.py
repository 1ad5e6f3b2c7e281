"""The dashboard: the figures of the last days as server-rendered SVG charts.

Tenant staff see their tenant; platform administrators see every tenant or pick one
(?tenant=<id>). The same figures come from /api/v1/metrics/... for external dashboards.
"""

from __future__ import annotations

from django.shortcuts import render

from messaging.live import charts, metrics
from messaging.live.views import _context
from tenants.admin_base import is_platform_admin
from tenants.models import Tenant

DAY_CHOICES = [7, 14, 30, 90]


def _scope(request):
    """(tenant_ids or None for all, chosen tenant or None, tenant choices)."""
    if not is_platform_admin(request):
        return [request.tenant_id], None, []
    tenants = list(Tenant.objects.order_by("name"))
    chosen = next((t for t in tenants if str(t.pk) == request.GET.get("tenant", "")), None)
    return ([chosen.pk] if chosen else None), chosen, tenants


def dashboard_figures(tenant_ids, days) -> list[dict]:
    assistance = metrics.assistance(tenant_ids, days)
    usage = metrics.usage(tenant_ids, days)
    latency = metrics.turn_latency(tenant_ids, days)
    return [
        {"id": "conversations", "chart": charts.bar_chart(
            title="Conversations per channel per day", days=days,
            series=metrics.conversations_per_channel(tenant_ids, days) or {"none": [0] * len(days)})},
        {"id": "messages", "chart": charts.line_chart(
            title="Messages in and out per day", days=days, series=metrics.messages_in_out(tenant_ids, days))},
        {"id": "assistance", "chart": charts.bar_chart(
            title="Assistance reports per day (sales, support...)", days=days,
            series=assistance["counts"] or {"none": [0] * len(days)})},
        {"id": "score", "chart": charts.line_chart(
            title="Average assistance score per day (0 to 1)", days=days,
            series=assistance["average_score"] or {"none": [None] * len(days)}, top=1)},
        {"id": "latency", "chart": charts.line_chart(
            title="Agent turn latency per day (ms)", days=days,
            series={"average": latency["average_ms"], "slowest": latency["max_ms"]}, unit=" ms")},
        {"id": "cost", "chart": charts.bar_chart(
            title="Token cost per day (USD)", days=days, series={"cost": usage["cost"]}, unit="$")},
        {"id": "failures", "chart": charts.bar_chart(
            title="Failed deliveries per day", days=days, series=metrics.failed_deliveries(tenant_ids, days))},
    ]


def dashboard_view(request):
    if request.tenant_id is None and not is_platform_admin(request):
        return render(request, "live/no_tenant.html", _context(request, title="Dashboard"), status=403)
    tenant_ids, chosen, tenants = _scope(request)
    try:
        span = int(request.GET.get("days", metrics.DEFAULT_DAYS))
    except ValueError:
        span = metrics.DEFAULT_DAYS
    span = span if span in DAY_CHOICES else metrics.DEFAULT_DAYS
    days = metrics.day_range(span)
    return render(request, "live/dashboard.html", _context(
        request, title="Dashboard", figures=dashboard_figures(tenant_ids, days), tenants=tenants,
        chosen=chosen, span=span, day_choices=DAY_CHOICES, platform=is_platform_admin(request),
    ))
