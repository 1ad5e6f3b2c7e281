"""Daily figures of conversations, messages and deliveries (dashboard and /api/v1/metrics/).

`tenant_ids=None` means every tenant (platform administrators only; the callers decide).
Days are UTC calendar days; every series has one value per day, zeros included, so charts
and external dashboards need no gap filling.
"""

from __future__ import annotations

from datetime import date, timedelta

from django.db.models import Count, Q
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


def as_table(days: list[date], series: dict[str, list]) -> list[dict]:
    """[{"day": "2026-11-25", name: value, ...}] for the API."""
    return [{"day": day.isoformat(), **{name: values[i] for name, values in series.items()}} for i, day in enumerate(days)]
