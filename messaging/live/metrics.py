"""Daily figures of conversations, messages and deliveries (dashboard and /api/v1/metrics/).

`tenant_ids=None` means every tenant (platform administrators only; the callers decide).
Days are UTC calendar days; every series has one value per day, zeros included, so charts
and external dashboards need no gap filling.
"""

from __future__ import annotations

from datetime import date, timedelta

from django.db.models import Count, Min, Q
from django.db.models.functions import TruncDate
from django.utils import timezone

from messaging.models import ChatMessage, DeliveryAttempt, Direction, MessageStatus, Provider

DEFAULT_DAYS = 14
MAX_DAYS = 90


def day_range(days: int, *, today: date | None = None) -> list[date]:
    today = today or timezone.now().date()
    return [today - timedelta(days=offset) for offset in range(days - 1, -1, -1)]


def _rows(model, tenant_ids, since):
    queryset = model.dangerously_unscoped.all() if tenant_ids is None else model.dangerously_unscoped.filter(
        tenant_id__in=list(tenant_ids)
    )
    field = "started_at" if model is DeliveryAttempt else "created_at"
    return queryset.filter(**{f"{field}__date__gte": since}).annotate(day=TruncDate(field))


def _series(days, counted, key="n") -> list[int]:
    by_day = {row["day"]: row[key] for row in counted}
    return [by_day.get(day, 0) for day in days]


def conversations_per_channel(tenant_ids, days: list[date]) -> dict[str, list[int]]:
    """Conversations with at least one message that day, by channel (playground excluded)."""
    rows = (
        _rows(ChatMessage, tenant_ids, days[0]).exclude(provider=Provider.PLAYGROUND)
        .values("day", "conversation__channel_source").annotate(n=Count("conversation", distinct=True))
    )
    channels: dict[str, dict] = {}
    for row in rows:
        channels.setdefault(row["conversation__channel_source"], {})[row["day"]] = row["n"]
    return {channel: [per_day.get(day, 0) for day in days] for channel, per_day in sorted(channels.items())}


def messages_in_out(tenant_ids, days: list[date]) -> dict[str, list[int]]:
    rows = (
        _rows(ChatMessage, tenant_ids, days[0]).exclude(provider=Provider.PLAYGROUND)
        .values("day").annotate(inbound=Count("id", filter=Q(direction=Direction.IN)),
                                outbound=Count("id", filter=Q(direction=Direction.OUT)))
    )
    rows = list(rows)
    return {"in": _series(days, rows, "inbound"), "out": _series(days, rows, "outbound")}


def failed_deliveries(tenant_ids, days: list[date]) -> dict[str, list[int]]:
    """Outbound messages that ended failed, and failed or retried attempts, per day."""
    failed = list(
        _rows(ChatMessage, tenant_ids, days[0]).filter(direction=Direction.OUT, status=MessageStatus.FAILED)
        .values("day").annotate(n=Count("id"))
    )
    attempts = list(
        _rows(DeliveryAttempt, tenant_ids, days[0]).exclude(outcome__in=["sent", ""])
        .values("day").annotate(n=Count("id"))
    )
    return {"failed_messages": _series(days, failed), "failed_attempts": _series(days, attempts)}


# A queued message this long past its slot means the relay is behind or no worker is running.
OVERDUE_SECONDS = 60


def delivery_queue(tenant_ids, *, now=None) -> dict:
    """The relay right now: messages waiting to leave, those being retried, those overdue (past
    their slot by more than OVERDUE_SECONDS) and the oldest one's lateness, and failed ones."""
    now = now or timezone.now()
    queryset = ChatMessage.dangerously_unscoped.filter(direction=Direction.OUT).exclude(provider=Provider.PLAYGROUND)
    if tenant_ids is not None:
        queryset = queryset.filter(tenant_id__in=list(tenant_ids))
    overdue_before = now - timedelta(seconds=OVERDUE_SECONDS)
    figures = queryset.filter(status__in=[MessageStatus.QUEUED, MessageStatus.FAILED]).aggregate(
        waiting=Count("id", filter=Q(status=MessageStatus.QUEUED)),
        retrying=Count("id", filter=Q(status=MessageStatus.QUEUED, attempts__gt=0)),
        overdue=Count("id", filter=Q(status=MessageStatus.QUEUED, scheduled_at__lt=overdue_before)),
        oldest_slot=Min("scheduled_at", filter=Q(status=MessageStatus.QUEUED)),
        failed=Count("id", filter=Q(status=MessageStatus.FAILED)),
    )
    oldest = figures.pop("oldest_slot")
    figures["oldest_late_seconds"] = max(0, int((now - oldest).total_seconds())) if oldest else 0
    return figures


def as_table(days: list[date], series: dict[str, list]) -> list[dict]:
    """[{"day": "2026-11-25", name: value, ...}] for the API."""
    return [{"day": day.isoformat(), **{name: values[i] for name, values in series.items()}} for i, day in enumerate(days)]


# --- Agent figures: the agents app's selectors (agents.metrics), summed over tenants ---------


def _agent_rows(selector, tenant_ids, days: list[date]) -> list[dict]:
    from tenants.models import Tenant

    ids = list(tenant_ids) if tenant_ids is not None else list(Tenant.objects.values_list("id", flat=True))
    rows = []
    for tenant_id in ids:
        rows += selector(tenant_id, date_from=days[0], date_to=days[-1])
    return rows


def assistance(tenant_ids, days: list[date]) -> dict[str, dict[str, list]]:
    """{"counts": {type: [n per day]}, "average_score": {type: [score or None per day]}}."""
    from agents.metrics import assistance_series

    index = {day.isoformat(): i for i, day in enumerate(days)}
    counts: dict[str, list[int]] = {}
    weighted: dict[str, list[float]] = {}
    for row in _agent_rows(assistance_series, tenant_ids, days):
        i = index.get(row["date"])
        if i is None:
            continue
        counts.setdefault(row["type"], [0] * len(days))[i] += row["count"]
        weighted.setdefault(row["type"], [0.0] * len(days))[i] += row["average_score"] * row["count"]
    scores = {t: [round(weighted[t][i] / n, 3) if n else None for i, n in enumerate(counts[t])] for t in counts}
    return {"counts": dict(sorted(counts.items())), "average_score": dict(sorted(scores.items()))}


def usage(tenant_ids, days: list[date]) -> dict[str, list]:
    """Turns, failed turns, tokens and cost per day, over all agents."""
    from agents.metrics import usage_series

    index = {day.isoformat(): i for i, day in enumerate(days)}
    keys = ("turns", "failed_turns", "input_tokens", "output_tokens", "cost")
    totals = {key: [0] * len(days) for key in keys}
    for row in _agent_rows(usage_series, tenant_ids, days):
        i = index.get(row["date"])
        if i is not None:
            for key in keys:
                totals[key][i] += row[key]
    totals["cost"] = [round(float(c), 6) for c in totals["cost"]]
    return totals


def turn_latency(tenant_ids, days: list[date]) -> dict[str, list]:
    """Average and slowest agent-turn latency (ms) per day. agents.metrics.usage_series has no
    latency; this is the one figure read from AgentTurn here."""
    from django.db.models import Avg, Max

    from agents.models import AgentTurn

    rows = list(_rows(AgentTurn, tenant_ids, days[0]).values("day").annotate(avg=Avg("latency_ms"), max=Max("latency_ms")))
    by_day = {row["day"]: row for row in rows}
    return {
        "average_ms": [round(by_day[d]["avg"], 1) if d in by_day else None for d in days],
        "max_ms": [round(by_day[d]["max"], 1) if d in by_day else None for d in days],
    }
