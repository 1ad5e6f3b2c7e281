"""YCloud webhooks: inbound WhatsApp messages and outbound status updates."""

from __future__ import annotations

from datetime import datetime

from messaging.webhooks import whatsapp_content
from messaging.webhooks.normalized import InboundMessage, StatusUpdate, UnexpectedShape, parser

STATUSES = {"sent": "sent", "delivered": "delivered", "read": "read", "failed": "failed"}


def _time(value) -> datetime | None:
    try:
        return datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None


@parser
def parse(payload: dict) -> tuple[str, list]:
    """(event id, events). Unknown event types parse to no events."""
    if not isinstance(payload, dict) or not payload.get("id") or not payload.get("type"):
        raise UnexpectedShape("YCloud delivery has no event 'id' or 'type'")
    event_id, kind = str(payload["id"]), payload["type"]
    if kind == "whatsapp.inbound_message.received":
        msg = payload.get("whatsappInboundMessage")
        # `from` is withheld for a customer who uses a WhatsApp username: then `fromUserId` (BSUID).
        contact = str(msg.get("from") or msg.get("fromUserId") or "").lstrip("+") if isinstance(msg, dict) else ""
        if not contact:
            raise UnexpectedShape("whatsapp.inbound_message.received without whatsappInboundMessage.from or fromUserId")
        text, attachments = whatsapp_content.customer_message(msg)
        return event_id, [
            InboundMessage(
                route_key=str(msg.get("to", "")).lstrip("+"),
                channel_source="whatsapp",
                contact_id=contact,
                contact_user_id=str(msg.get("fromUserId") or ""),
                contact_name=(msg.get("customerProfile") or {}).get("name", ""),
                provider_message_id=str(msg.get("wamid") or msg.get("id") or event_id),
                text=text,
                attachments=attachments,
                triggers_turn=whatsapp_content.triggers_turn(msg),
                sent_at=_time(msg.get("sendTime")),
            )
        ]
    if kind == "whatsapp.message.updated":
        msg = payload.get("whatsappMessage")
        if not isinstance(msg, dict) or not msg.get("id"):
            raise UnexpectedShape("whatsapp.message.updated without whatsappMessage.id")
        status = STATUSES.get(str(msg.get("status", "")))
        if not status:
            return event_id, []
        error = " ".join(str(msg[k]) for k in ("errorCode", "errorMessage") if msg.get(k))
        return event_id, [
            StatusUpdate(
                route_key=str(msg.get("from", "")).lstrip("+"), provider_message_id=str(msg["id"]), status=status,
                error=error, idempotency_key=str(msg.get("externalId") or ""),
            )
        ]
    return event_id, []
