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


def _figure(figure_id: str, draw, title: str, **kwargs) -> dict:
    return {"id": figure_id, "title": title, "chart": draw(title=title, **kwargs)}


def dashboard_figures(tenant_ids, days) -> list[dict]:
    assistance = metrics.assistance(tenant_ids, days)
    usage = metrics.usage(tenant_ids, days)
    latency = metrics.turn_latency(tenant_ids, days)
    return [
        _figure("conversations", charts.bar_chart, "Conversations per channel per day", days=days,
                series=metrics.conversations_per_channel(tenant_ids, days) or {"none": [0] * len(days)}),
        _figure("messages", charts.line_chart, "Messages in and out per day", days=days,
                series=metrics.messages_in_out(tenant_ids, days)),
        _figure("assistance", charts.bar_chart, "Assistance reports per day (sales, support)", days=days,
                series=assistance["counts"] or {"none": [0] * len(days)}),
        _figure("score", charts.line_chart, "Average assistance score per day (0 to 1)", days=days,
                series=assistance["average_score"] or {"none": [None] * len(days)}, top=1),
        _figure("latency", charts.line_chart, "Agent turn latency per day (ms)", days=days,
                series={"average": latency["average_ms"], "slowest": latency["max_ms"]}, unit=" ms"),
        _figure("cost", charts.bar_chart, "Token cost per day (USD)", days=days,
                series={"cost": usage["cost"]}, unit="$"),
        _figure("failures", charts.bar_chart, "Failed deliveries per day", days=days,
                series=metrics.failed_deliveries(tenant_ids, days)),
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
        request, title="Dashboard", figures=dashboard_figures(tenant_ids, days),
        queue=metrics.delivery_queue(tenant_ids), overdue_seconds=metrics.OVERDUE_SECONDS, tenants=tenants,
        chosen=chosen, span=span, day_choices=DAY_CHOICES, platform=is_platform_admin(request),
    ))
