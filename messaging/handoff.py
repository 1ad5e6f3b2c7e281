"""handoff_to_human: pause the bot, switch to human mode, e-mail the transcript when configured."""

from __future__ import annotations

import logging

from django.db import transaction

from messaging import tenant_mail
from messaging.history import message_as_text
from messaging.models import ChatConversation, ChatMessage
from tenants.scoping import tenant_scope
from vault.credentials import check_credentials, get_category

logger = logging.getLogger(__name__)


def on_handoff_requested(sender=None, *, tenant_id, conversation_id=None, reason="", agent_id=None, turn_id=None, **kwargs):
    """Receiver of agents.signals.handoff_requested."""
    from messaging.services import set_bot_paused
    from messaging.tasks import send_handoff_email

    if conversation_id is None:
        return  # a playground or API turn without a conversation
    try:
        set_bot_paused(tenant_id=tenant_id, conversation_id=conversation_id, paused=True, human_mode=True)
    except LookupError:
        logger.warning("Handoff for unknown conversation %s of tenant %s", conversation_id, tenant_id)
        return
    with tenant_scope(tenant_id):
        wants_mail = check_credentials(tenant_id, "smtp")
    if wants_mail:
        transaction.on_commit(lambda: send_handoff_email.defer(
            tenant_id=tenant_id, conversation_id=conversation_id, reason=reason or ""
        ))
    logger.info("Conversation %s handed off to a human (%s); e-mail %s", conversation_id, reason,
                "queued" if wants_mail else "not configured")


def email_transcript(*, tenant_id: int, conversation_id: int, reason: str = "") -> str:
    with tenant_scope(tenant_id):
        smtp = get_category(tenant_id, "smtp")
        recipient = smtp.get("HANDOFF_TO")
        if not recipient:
            return "no HANDOFF_TO address"
        conversation = ChatConversation.objects.get(pk=conversation_id)
        lines = [
            f"[{m.created_at:%Y-%m-%d %H:%M}] {m.role}: {message_as_text(m)}"
            for m in ChatMessage.objects.filter(conversation=conversation).order_by("created_at", "id")
        ]
    tenant_mail.send(tenant_id=tenant_id, smtp=smtp, to=recipient, subject=f"Handoff: {conversation} needs a human",
                     body=f"Reason: {reason or 'the customer asked for a human'}\n\n" + "\n".join(lines))
    return "sent"
