"""Meta's one app-level webhook: WhatsApp Cloud (`changes`) and Messenger/Instagram (`messaging`)."""

from __future__ import annotations

import logging

from messaging.webhooks import whatsapp_content
from messaging.webhooks.normalized import (
    InboundMessage,
    ReadUpTo,
    StatusUpdate,
    UnexpectedShape,
    as_list,
    each_item,
    from_unix,
    parser,
)

logger = logging.getLogger(__name__)

WHATSAPP_STATUSES = {"sent": "sent", "delivered": "delivered", "read": "read", "played": "read", "failed": "failed"}


@parser
def parse(body: dict) -> list:
    """Every event of every entry; raises UnexpectedShape when nothing here is a Meta delivery."""
    if not isinstance(body, dict) or not isinstance(body.get("entry"), list):
        raise UnexpectedShape("Meta delivery has no 'entry' list")
    kind = body.get("object")
    events: list = []
    for entry in body["entry"]:
        if not isinstance(entry, dict):
            continue
        if kind == "whatsapp_business_account" or "changes" in entry:
            changes = [c for c in as_list(entry.get("changes"), "entry.changes") if isinstance(c, dict)]
            events += each_item(changes, _whatsapp_change, "WhatsApp change")
        if "messaging" in entry:
            channel, account_id = ("instagram" if kind == "instagram" else "facebook"), str(entry.get("id", ""))
            items = [i for i in as_list(entry.get("messaging"), "entry.messaging") if isinstance(i, dict)]
            events += each_item(items, lambda item: _messaging_item(account_id, channel, item), f"{channel} item")
    return events


def _whatsapp_change(change: dict) -> list:
    value = change.get("value") or {}
    if not isinstance(value, dict):
        return []
    phone_number_id = str((value.get("metadata") or {}).get("phone_number_id", ""))
    names = {
        str(c.get("wa_id", "")): (c["profile"].get("name", "") if isinstance(c.get("profile"), dict) else "")
        for c in as_list(value.get("contacts"), "value.contacts")
        if isinstance(c, dict)
    }

    def message(msg) -> list:
        if not isinstance(msg, dict) or not msg.get("id") or not msg.get("from"):
            return []
        text, attachments = whatsapp_content.describe(msg)
        return [
            InboundMessage(
                route_key=phone_number_id,
                channel_source="whatsapp",
                contact_id=str(msg["from"]),
                contact_name=names.get(str(msg["from"]), ""),
                provider_message_id=str(msg["id"]),
                text=text,
                attachments=attachments + whatsapp_content.context_attachment(msg),
                triggers_turn=whatsapp_content.triggers_turn(msg),
                sent_at=from_unix(msg.get("timestamp")),
            )
        ]

    def status_update(status) -> list:
        if not (isinstance(status, dict) and status.get("id") and status.get("status") in WHATSAPP_STATUSES):
            return []
        errors = as_list(status.get("errors"), "status.errors")
        error = "; ".join(
            f"{e.get('code')}: {(e.get('error_data') or {}).get('details') or e.get('title', '')}" for e in errors
        )
        return [StatusUpdate(phone_number_id, str(status["id"]), WHATSAPP_STATUSES[status["status"]], error)]

    events = each_item(as_list(value.get("messages"), "value.messages"), message, "WhatsApp message")
    events += each_item(as_list(value.get("statuses"), "value.statuses"), status_update, "WhatsApp status")
    # message_echoes (smb_message_echoes): the business wrote from its own app; not customer messages.
    if value.get("message_echoes"):
        logger.info("Ignoring %d WhatsApp echo(es) for %s", len(value["message_echoes"]), phone_number_id)
    return events


def _messaging_item(account_id: str, channel: str, item: dict) -> list:
    sender = str((item.get("sender") or {}).get("id", ""))
    sent_at = from_unix(item.get("timestamp"))
    message = item.get("message")
    if isinstance(message, dict):
        if message.get("is_echo") or sender == account_id:
            return []  # the page's own messages come back as echoes
        return [_messenger_message(account_id, channel, sender, sent_at, message)]
    if isinstance(item.get("postback"), dict):
        postback = item["postback"]
        mid = postback.get("mid") or f"postback:{sender}:{item.get('timestamp')}"
        return [
            InboundMessage(
                account_id, channel, sender, str(mid), text=postback.get("title", ""),
                attachments=[{"type": "postback", "payload": postback.get("payload", "")}], sent_at=sent_at,
            )
        ]
    if isinstance(item.get("delivery"), dict):
        return [StatusUpdate(account_id, str(mid), "delivered") for mid in item["delivery"].get("mids") or []]
    if isinstance(item.get("read"), dict):
        watermark = from_unix(item["read"].get("watermark")) or sent_at
        return [ReadUpTo(account_id, channel, sender, watermark)] if watermark else []
    if isinstance(item.get("reaction"), dict):
        reaction = item["reaction"]
        return [
            InboundMessage(
                account_id, channel, sender, f"reaction:{reaction.get('mid')}:{item.get('timestamp')}",
                text=f"[reaction {reaction.get('emoji') or reaction.get('reaction', '')} {reaction.get('action', '')}]",
                attachments=[{"type": "reaction", **reaction}], triggers_turn=False, sent_at=sent_at,
            )
        ]
    if isinstance(item.get("message_edit"), dict):
        edit = item["message_edit"]
        return [
            InboundMessage(
                account_id, channel, sender, f"edit:{edit.get('mid')}:{edit.get('num_edit', '')}",
                text=f"[edited a message] {edit.get('text', '')}".strip(),
                attachments=[{"type": "edit", "message_id": edit.get("mid", "")}], triggers_turn=False,
                sent_at=sent_at,
            )
        ]
    return []


def _messenger_message(account_id, channel, sender, sent_at, message: dict) -> InboundMessage:
    attachments = [
        {"type": a.get("type", "file"), "url": (a.get("payload") or {}).get("url", ""),
         "media_id": str((a.get("payload") or {}).get("attachment_id", ""))}
        for a in message.get("attachments") or []
        if isinstance(a, dict)
    ]
    if isinstance(message.get("quick_reply"), dict):
        attachments.append({"type": "quick_reply", "payload": message["quick_reply"].get("payload", "")})
    if isinstance(message.get("reply_to"), dict) and message["reply_to"].get("mid"):
        attachments.append({"type": "reply_to", "message_id": message["reply_to"]["mid"]})
    deleted = bool(message.get("is_deleted"))
    return InboundMessage(
        account_id, channel, sender, str(message.get("mid") or f"{sender}:{sent_at}"),
        text="[deleted a message]" if deleted else message.get("text", "") or "",
        attachments=attachments, triggers_turn=not deleted and not message.get("is_unsupported"), sent_at=sent_at,
    )
