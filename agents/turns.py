"""Recording turns: the AgentTurn row, the assistance reports tools asked for, the handoff signal."""

from __future__ import annotations

import logging
import time

from django.conf import settings

from django.db import connection, transaction

from agents.catalog import CatalogModel
from agents.models import Agent, AgentTurn, AssistanceReport
from agents.registry import ToolContext
from agents.signals import handoff_requested
from tenants.models import Tenant

logger = logging.getLogger(__name__)


def tenant_slug(tenant_id: int) -> str:
    return Tenant.objects.filter(pk=tenant_id).values_list("slug", flat=True).first() or str(tenant_id)


def _elapsed_ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 2)


def _relax_commit() -> None:
    """Turn records are analytics: the commit need not wait for the WAL flush (a crash can lose
    the last few hundred milliseconds of them, never corrupt them). Only this transaction."""
    if connection.in_atomic_block and settings.AGENT_TURN_ASYNC_COMMIT:
        with connection.cursor() as cursor:
            cursor.execute("SET LOCAL synchronous_commit TO OFF")


def record_failure(*, agent: Agent, conversation_id, error: str, started: float, tool_calls=None,
                   ctx: ToolContext | None = None):
    from agents.runtime import TurnResult

    latency = _elapsed_ms(started)
    with transaction.atomic():
        _relax_commit()
        turn = AgentTurn.objects.for_tenant(agent.tenant_id).create(
            tenant_id=agent.tenant_id, agent=agent, conversation_id=conversation_id, model_version=agent.model_version,
            latency_ms=latency, tool_calls=list(tool_calls or []), ok=False, error=error,
        )
    logger.warning("Agent %s turn %s failed: %s (tenant %s, conversation %s)",
                   agent.pk, turn.pk, error, agent.tenant_id, conversation_id)
    return TurnResult(error=error, turn_id=turn.pk, tool_calls=list(tool_calls or []), latency_ms=latency)


def record_success(*, agent: Agent, entry: CatalogModel, ctx: ToolContext, parts: list[str], tool_calls: list[dict],
                   input_tokens: int, output_tokens: int, started: float):
    from agents.runtime import TurnResult

    cost = entry.cost(input_tokens, output_tokens)
    handoff = ctx.signals.get("handoff")
    latency = _elapsed_ms(started)
    with transaction.atomic():
        _relax_commit()
        turn = AgentTurn.objects.for_tenant(agent.tenant_id).create(
            tenant_id=agent.tenant_id, agent=agent, conversation_id=ctx.conversation_id, model_version=entry.key,
            input_tokens=input_tokens, output_tokens=output_tokens, cost=cost, latency_ms=latency,
            tool_calls=tool_calls, ok=True, handoff_reason=handoff or "",
        )
        reports = ctx.signals.get("assistance_reports") or []
        if reports:
            AssistanceReport.objects.for_tenant(agent.tenant_id).bulk_create([
                AssistanceReport(tenant_id=agent.tenant_id, agent=agent, conversation_id=ctx.conversation_id, **r)
                for r in reports
            ])
        if handoff is not None:
            transaction.on_commit(lambda: handoff_requested.send(
                sender=Agent, tenant_id=agent.tenant_id, agent_id=agent.pk,
                conversation_id=ctx.conversation_id, reason=handoff, turn_id=turn.pk,
            ))
    return TurnResult(
        parts=parts, tool_calls=tool_calls, turn_id=turn.pk, handoff_reason=handoff, latency_ms=latency,
        usage={"input_tokens": input_tokens, "output_tokens": output_tokens, "cost": float(cost)},
    )


