"""Chatwoot account webhooks: message_created becomes a customer message, a human reply, or nothing;
a conversation staff resolve closes ours."""

from __future__ import annotations

from messaging.webhooks.normalized import ConversationResolved, HumanReply, InboundMessage, UnexpectedShape, parser

# Chatwoot serialises message_type as a string in webhooks (older payloads used the enum integer).
MESSAGE_TYPES = {0: "incoming", 1: "outgoing", 2: "activity", 3: "template"}


def channel_of(conversation: dict, inbox: dict, default: str) -> str:
    channel = str(conversation.get("channel") or inbox.get("channel_type") or "").lower()
    if "instagram" in channel:
        return "instagram"
    if "facebook" in channel:
        return "facebook"
    if "whatsapp" in channel:
        return "whatsapp"
    return default


# Inboxes whose contact source id is a random id per browser or API client: the shop's own customer
# identifier (the widget's setUser, the API's identifier) names the person across them.
_RANDOM_SOURCE_IDS = ("webwidget", "api")


def _source_id(conversation: dict) -> str:
    """The contact's source id in its inbox, as a phone number where it is one: Twilio's WhatsApp
    inboxes prefix it ("whatsapp:+5491..."), the Cloud API inbox does not ("5491...")."""
    source = str((conversation.get("contact_inbox") or {}).get("source_id") or "").strip()
    if source.lower().startswith("whatsapp:"):
        source = source.split(":", 1)[1]
    return source.lstrip("+")


def _verified(conversation: dict) -> bool:
    """Chatwoot's identity validation: the widget's setUser came with the HMAC of the identifier
    made with the inbox's secret (contact_inbox.hmac_verified, conversation meta.hmac_verified)."""
    return bool((conversation.get("contact_inbox") or {}).get("hmac_verified")
                or (conversation.get("meta") or {}).get("hmac_verified"))


def _contact(conversation: dict, payload: dict) -> tuple[str, str, tuple[str, ...]]:
    """The customer's id, their name, and every id they may have been kept under before.

    The id: the contact's source id in its inbox first (the phone number on a WhatsApp inbox, the
    PSID on Messenger), which never changes for the contact in that inbox; a phone number an agent
    adds to a contact later would otherwise start a second conversation with the same person. On
    the web widget and API inboxes the source id is random per browser or client, so the shop's
    identifier for the customer comes first there, but only when Chatwoot verified it (identity
    validation): anyone can call setUser with someone else's identifier, and would then read their
    conversation through the bot. (A message in a Chatwoot conversation we already keep under one
    of the other ids still goes to it: messaging.ingest.)"""
    person = (conversation.get("meta") or {}).get("sender") or {}
    if not person and (payload.get("sender") or {}).get("type") == "contact":
        person = payload["sender"]
    channel = str(conversation.get("channel") or (payload.get("inbox") or {}).get("channel_type") or "").lower()
    identifier = str(person.get("identifier") or "").strip().lstrip("+")
    source = _source_id(conversation)
    phone = str(person.get("phone_number") or "").strip().lstrip("+")
    fallback = f"chatwoot-contact:{person['id']}" if person.get("id") else ""
    if identifier and _verified(conversation) and any(kind in channel for kind in _RANDOM_SOURCE_IDS):
        key = identifier
    else:
        key = source or phone or identifier or fallback
    aliases = tuple(dict.fromkeys(a for a in (source, phone, identifier, fallback) if a and a != key))
    return key, person.get("name", "") or "", aliases


@parser
def parse(payload: dict, *, default_channel: str) -> list:
    if not isinstance(payload, dict) or "event" not in payload:
        raise UnexpectedShape("Chatwoot delivery has no 'event'")
    if payload["event"] in ("conversation_status_changed", "conversation_resolved"):
        return _resolved(payload)
    if payload["event"] != "message_created":
        return []
    conversation = payload.get("conversation")
    if not isinstance(conversation, dict) or not conversation.get("id") or not payload.get("id"):
        raise UnexpectedShape("Chatwoot message_created without message or conversation id")
    message_type = payload.get("message_type")
    message_type = MESSAGE_TYPES.get(message_type, message_type)
    if payload.get("private"):
        return []  # private notes are staff-only
    sender_type = str((payload.get("sender") or {}).get("type", "")).lower()
    contact_id, contact_name, aliases = _contact(conversation, payload)
    if not contact_id:
        raise UnexpectedShape("Chatwoot message without a contact")
    common = dict(
        route_key=str((payload.get("account") or {}).get("id", "")),
        channel_source=channel_of(conversation, payload.get("inbox") or {}, default_channel),
        contact_id=contact_id,
        contact_name=contact_name,
        provider_message_id=str(payload["id"]),
        external_chatwoot_id=str(conversation["id"]),
        external_account_id=str((payload.get("account") or {}).get("id", "")),
        contact_aliases=aliases,
    )
    if message_type == "incoming":
        attachments = [
            {"type": a.get("file_type", "file"), "url": a.get("data_url", ""), "media_id": str(a.get("id", ""))}
            for a in payload.get("attachments") or []
            if isinstance(a, dict)
        ]
        return [InboundMessage(text=payload.get("content") or "", attachments=attachments, **common)]
    if message_type == "outgoing" and sender_type == "user":
        return [HumanReply(text=payload.get("content") or "", **common)]
    # outgoing from a bot or the API (ours), activity, template: never a customer message.
    return []


def _resolved(conversation: dict) -> list:
    """conversation_status_changed carries the conversation itself (no account object: its messages
    name the account). Only "resolved" means anything here; open, pending and snoozed change nothing."""
    if conversation.get("status") != "resolved":
        return []
    if not conversation.get("id"):
        raise UnexpectedShape("Chatwoot conversation_status_changed without the conversation's id")
    messages = [m for m in conversation.get("messages") or [] if isinstance(m, dict)]
    account = conversation.get("account_id") or (messages[0].get("account_id") if messages else "") or ""
    return [ConversationResolved(route_key=str(account), external_chatwoot_id=str(conversation["id"]))]
