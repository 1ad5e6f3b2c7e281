"""A few days of activity for one tenant: conversations on three channels, agent turns,
assistance reports, a failed delivery. Used by the dashboard tests and the screenshots."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

from django.utils import timezone

from agents.models import Agent, AgentTurn, AssistanceReport
from messaging.models import ChatConversation, ChatMessage, DeliveryAttempt

CUSTOMERS = [
    ("whatsapp", "5491155550001", "Lucía Fernández"), ("instagram", "17841455550002", "sofi.baila"),
    ("whatsapp", "5491155550003", "Martina"), ("facebook", "2455550004", "Carla Ruiz"),
]


def _at(row, when):
    type(row).dangerously_unscoped.filter(pk=row.pk).update(created_at=when)


def seed_activity(tenant, *, days: int = 10, agent: Agent | None = None) -> dict:
    now = timezone.now()
    agent = agent or Agent.dangerously_unscoped.create(
        tenant=tenant, name="Ventas", role="sales", model_provider="openai", model_version="gpt-5-mini",
    )
    conversations = []
    for index, (channel, contact, name) in enumerate(CUSTOMERS):
        conversations.append(ChatConversation.dangerously_unscoped.create(
            tenant=tenant, provider="meta_direct", channel_source=channel, contact_external_id=contact,
            contact_name=name, agent_id=agent.pk, last_message_at=now - timedelta(minutes=5 * index),
            last_inbound_at=now - timedelta(minutes=5 * index),
        ))
    for day in range(days):
        when = now - timedelta(days=day, hours=1)
        for index, conversation in enumerate(conversations[: 1 + (day + index) % len(conversations)]):
            inbound = ChatMessage.dangerously_unscoped.create(
                tenant=tenant, conversation=conversation, direction="in", role="customer", provider="meta_direct",
                text="¿Tienen puntas talle 37?", status="received",
            )
            outbound = ChatMessage.dangerously_unscoped.create(
                tenant=tenant, conversation=conversation, direction="out", role="agent", provider="meta_direct",
                text="¡Sí! Tenemos Grishko y Bloch.", status="read",
            )
            _at(inbound, when)
            _at(outbound, when + timedelta(seconds=20))
            turn = AgentTurn.dangerously_unscoped.create(
                tenant=tenant, agent=agent, conversation_id=conversation.pk, model_version="gpt-5-mini",
                input_tokens=900 + 40 * day, output_tokens=120, cost=Decimal("0.0009") * (1 + index),
                latency_ms=1800 + 150 * ((day * 7 + index) % 5),
            )
            _at(turn, when + timedelta(seconds=18))
        report = AssistanceReport.dangerously_unscoped.create(
            tenant=tenant, agent=agent, type="sales" if day % 3 else "support", score=0.55 + (day % 4) / 10,
        )
        _at(report, when)
    failed = ChatMessage.dangerously_unscoped.create(
        tenant=tenant, conversation=conversations[0], direction="out", role="agent", provider="meta_direct",
        text="Te paso el link de pago", status="failed", error="meta_direct answered HTTP 400: (#131047) Re-engagement message",
    )
    DeliveryAttempt.dangerously_unscoped.create(
        tenant=tenant, message=failed, number=1, started_at=now, duration_ms=180, http_status=400, outcome="failed",
        error=failed.error,
    )
    return {"agent": agent, "conversations": conversations, "failed": failed}
