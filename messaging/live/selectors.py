"""Reads for the live screens: inbox rows with last message and unread count, a pane's messages."""

from __future__ import annotations

from datetime import UTC, datetime

from django.db.models import Count, IntegerField, OuterRef, Subquery, Value
from django.db.models.functions import Coalesce

from messaging.models import ChatConversation, ChatMessage, Direction, Provider
from messaging.serializers import MessageSerializer

INBOX_LIMIT = 100
PANE_LIMIT = 200
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def inbox_queryset(tenant_id: int):
    """Customer conversations (not the playground), newest activity first, annotated with the
    last message and `unread`: inbound messages newer than the last outbound one."""
    messages = ChatMessage.objects.for_tenant(tenant_id).filter(conversation=OuterRef("pk"))
    latest = messages.order_by("-created_at", "-id")
    # Nested one level deeper than `latest`: the conversation is the unread row's conversation.
    last_out = (
        ChatMessage.objects.for_tenant(tenant_id)
        .filter(conversation=OuterRef("conversation_id"), direction=Direction.OUT)
        .order_by("-created_at").values("created_at")[:1]
    )
    unread = (
        ChatMessage.objects.for_tenant(tenant_id)
        .filter(conversation=OuterRef("pk"), direction=Direction.IN)
        .filter(created_at__gt=Coalesce(Subquery(last_out), Value(EPOCH)))
        .values("conversation").annotate(n=Count("id", distinct=True)).values("n")
    )
    return (
        ChatConversation.objects.for_tenant(tenant_id)
        .exclude(provider=Provider.PLAYGROUND)
        .annotate(
            last_text=Subquery(latest.values("text")[:1]),
            last_direction=Subquery(latest.values("direction")[:1]),
            unread=Coalesce(Subquery(unread, output_field=IntegerField()), Value(0)),
        )
        .order_by("-last_message_at", "-id")
    )


def inbox_row(conversation) -> dict:
    return {
        "id": conversation.pk,
        "name": conversation.contact_name or conversation.contact_external_id,
        "channel": conversation.channel_source,
        "provider": conversation.provider,
        "status": conversation.status,
        "paused": bool(conversation.bot_paused_until),
        "last_text": (getattr(conversation, "last_text", "") or "")[:120],
        "last_direction": getattr(conversation, "last_direction", "") or "",
        "last_message_at": conversation.last_message_at.isoformat() if conversation.last_message_at else None,
        "unread": getattr(conversation, "unread", 0),
    }


def inbox_rows(tenant_id: int, limit: int = INBOX_LIMIT) -> list[dict]:
    return [inbox_row(c) for c in inbox_queryset(tenant_id)[:limit]]


def get_conversation(tenant_id: int, conversation_id) -> ChatConversation | None:
    return ChatConversation.objects.for_tenant(tenant_id).filter(pk=conversation_id).first()


def pane_messages(tenant_id: int, conversation_id: int, limit: int = PANE_LIMIT) -> list[dict]:
    """The newest `limit` messages in reading order, as the live events carry them."""
    rows = list(
        ChatMessage.objects.for_tenant(tenant_id).filter(conversation_id=conversation_id)
        .order_by("-created_at", "-id")[:limit]
    )
    rows.reverse()
    return with_tool_calls(tenant_id, [dict(MessageSerializer(m).data) for m in rows])


def message_in_conversation(tenant_id: int, conversation_id: int, message_id: int) -> bool:
    return ChatMessage.objects.for_tenant(tenant_id).filter(pk=message_id, conversation_id=conversation_id).exists()


def agents_for_playground(tenant_id: int) -> list[dict]:
    """The tenant's agents with the vault category their model needs (openai or google)."""
    from agents.models import Agent

    return [
        {"id": agent.pk, "name": agent.name, "model": agent.model_version, "is_active": agent.is_active,
         "credential_category": agent.model_provider}
        for agent in Agent.objects.for_tenant(tenant_id).order_by("name", "id")
    ]


def tool_calls_by_turn(tenant_id: int, turn_ids) -> dict[str, list[dict]]:
    """The agent turns' tool traces, keyed by the turn id messages carry (a string)."""
    from agents.models import AgentTurn

    ids = [int(t) for t in {str(t) for t in turn_ids if t} if str(t).isdigit()]
    if not ids:
        return {}
    rows = AgentTurn.objects.for_tenant(tenant_id).filter(pk__in=ids).values_list("pk", "tool_calls")
    return {str(pk): [_tool_call(call) for call in calls or []] for pk, calls in rows}


def _tool_call(call: dict) -> dict:
    return {"name": call.get("name", "?"), "args": call.get("arguments") or {}, "ok": call.get("ok", True),
            "result": call.get("error") or ("ok" if call.get("ok", True) else "failed"),
            "duration_ms": call.get("duration_ms")}


def with_tool_calls(tenant_id: int, messages: list[dict]) -> list[dict]:
    traces = tool_calls_by_turn(tenant_id, [m.get("turn_id") for m in messages])
    for message in messages:
        message["tool_calls"] = traces.get(str(message.get("turn_id") or ""), [])
    return messages
