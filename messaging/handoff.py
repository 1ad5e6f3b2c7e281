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
    from messaging.tasks import open_in_chatwoot as open_in_chatwoot_job
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
    with tenant_scope(tenant_id):
        in_chatwoot = ChatConversation.objects.filter(
            pk=conversation_id, provider="chatwoot").exclude(external_chatwoot_id="").exists()
    if in_chatwoot:
        transaction.on_commit(lambda: open_in_chatwoot_job.defer(tenant_id=tenant_id, conversation_id=conversation_id))
    logger.info("Conversation %s handed off to a human (%s); e-mail %s", conversation_id, reason,
                "queued" if wants_mail else "not configured")


class ChatwootUnavailable(Exception):
    """Chatwoot could not be reached or answered 5xx/429: the job tries again later."""


def open_in_chatwoot(*, tenant_id: int, conversation_id: int) -> str:
    """The handed-off conversation is set to "open" in Chatwoot, where staff work, so it leaves
    the bot's pending list and shows in their inbox (Chatwoot's toggle_status; a no-op on one
    already open). Chatwoot down: raised for a retry; refused (a 4xx, no key): logged, not retried."""
    from messaging.providers import DeliveryError
    from messaging.providers.base import post_json
    from messaging.providers.http import chatwoot_api

    with tenant_scope(tenant_id):
        conversation = ChatConversation.objects.filter(pk=conversation_id).first()
        if conversation is None or not conversation.external_chatwoot_id or not conversation.external_account_id:
            return "no Chatwoot conversation"
        try:
            base, token = chatwoot_api(tenant_id)
            post_json(f"{base}/api/v1/accounts/{conversation.external_account_id}/conversations/"
                      f"{conversation.external_chatwoot_id}/toggle_status",
                      json={"status": "open"}, headers={"api_access_token": token}, provider="Chatwoot")
        except DeliveryError as exc:
            if exc.retryable:
                raise ChatwootUnavailable(exc.detail) from None
            logger.warning("Conversation %s handed off, but Chatwoot did not open it: %s", conversation_id, exc.detail)
            return f"not opened: {exc.detail}"
    logger.info("Conversation %s handed off: opened in Chatwoot (conversation %s)", conversation_id,
                conversation.external_chatwoot_id)
    return "opened"


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
