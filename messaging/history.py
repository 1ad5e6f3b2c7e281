"""The conversation as the agents runtime wants it: [{"role", "text"}], oldest first."""

from __future__ import annotations

from messaging.models import ChatMessage


def message_as_text(message: ChatMessage) -> str:
    """The text, or a short description of what was sent when there is none (media, location)."""
    if message.text:
        return message.text
    kinds = [a.get("type", "file") for a in message.attachments or [] if isinstance(a, dict)]
    kinds = [k for k in kinds if k not in ("reply_to", "forwarded")]
    return f"[{', '.join(kinds)}]" if kinds else ""


def build_history(conversation, *, exclude_ids=(), window: int = 20) -> list[dict]:
    rows = (
        ChatMessage.objects.for_tenant(conversation.tenant_id)
        .filter(conversation=conversation)
        .exclude(pk__in=list(exclude_ids))
        .exclude(status="failed")
        .order_by("-created_at", "-id")[:window]
    )
    history = [{"role": m.role, "text": message_as_text(m)} for m in reversed(list(rows))]
    return [h for h in history if h["text"]]
