"""Per-day metric series (selectors), shared by the API and the staff dashboard.

    assistance_series(tenant_id, date_from=..., date_to=..., agent_id=None)
      -> [{"date": "2026-11-24", "type": "sales", "count": 3, "average_score": 0.77}, ...]
    usage_series(tenant_id, ...)
      -> [{"date": ..., "agent_id": 4, "agent_name": "Ventas", "turns": 12, "failed_turns": 1,
           "input_tokens": ..., "output_tokens": ..., "cost": 0.0123}, ...]
"""

from __future__ import annotations

import datetime as dt

from django.db.models import Avg, Count, F, Q, Sum
from django.db.models.functions import TruncDate
from django.utils import timezone

from agents.models import AgentTurn, AssistanceReport

DEFAULT_DAYS = 30


def date_range(date_from: dt.date | None, date_to: dt.date | None) -> tuple[dt.date, dt.date]:
    """Inclusive day range; defaults to the last 30 days up to today."""
    date_to = date_to or timezone.localdate()
    date_from = date_from or date_to - dt.timedelta(days=DEFAULT_DAYS - 1)
    return date_from, date_to


def _window(queryset, date_from, date_to, agent_id):
    date_from, date_to = date_range(date_from, date_to)
    queryset = queryset.annotate(day=TruncDate("created_at")).filter(day__gte=date_from, day__lte=date_to)
    return queryset.filter(agent_id=agent_id) if agent_id else queryset


def assistance_series(tenant_id: int, *, date_from=None, date_to=None, agent_id=None) -> list[dict]:
    rows = (
        _window(AssistanceReport.objects.for_tenant(tenant_id), date_from, date_to, agent_id)
        .values("day", "type")
        .annotate(count=Count("id"), average_score=Avg("score"))
        .order_by("day", "type")
    )
    return [
        {"date": r["day"].isoformat(), "type": r["type"], "count": r["count"],
         "average_score": round(r["average_score"], 4)}
        for r in rows
    ]


def usage_series(tenant_id: int, *, date_from=None, date_to=None, agent_id=None) -> list[dict]:
    rows = (
        _window(AgentTurn.objects.for_tenant(tenant_id), date_from, date_to, agent_id)
        .values("day", "agent_id")
        .annotate(
            agent_name=F("agent__name"), turns=Count("id"), failed_turns=Count("id", filter=Q(ok=False)),
            input_tokens=Sum("input_tokens"), output_tokens=Sum("output_tokens"), cost=Sum("cost"),
        )
        .order_by("day", "agent_id")
    )
    return [
        {"date": r["day"].isoformat(), "agent_id": r["agent_id"], "agent_name": r["agent_name"],
         "turns": r["turns"], "failed_turns": r["failed_turns"], "input_tokens": r["input_tokens"] or 0,
         "output_tokens": r["output_tokens"] or 0, "cost": float(r["cost"] or 0)}
        for r in rows
    ]
