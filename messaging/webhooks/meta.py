"""Meta's one app-level webhook: WhatsApp Cloud (`changes`) and Messenger/Instagram (`messaging`)."""

from __future__ import annotations

import logging

from django.conf import settings

from messaging.webhooks import whatsapp_content
from messaging.webhooks.normalized import (
    HumanReply,
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
    # A customer is their phone number (wa_id, `from`) or, when they use a WhatsApp username and
    # Meta withholds the number, their business-scoped user id (user_id, `from_user_id`).
    names, user_ids = {}, {}
    for c in as_list(value.get("contacts"), "value.contacts"):
        if isinstance(c, dict):
            profile = c["profile"] if isinstance(c.get("profile"), dict) else {}
            name = profile.get("name") or profile.get("username") or c.get("username") or ""
            for key in ("wa_id", "user_id"):
                if c.get(key):
                    names[str(c[key])] = name
            if c.get("wa_id") and c.get("user_id"):
                user_ids[str(c["wa_id"])] = str(c["user_id"])

    def message(msg) -> list:
        contact = str(msg.get("from") or msg.get("from_user_id") or "") if isinstance(msg, dict) else ""
        if not contact or not msg.get("id"):
            return []
        text, attachments = whatsapp_content.customer_message(msg)
        return [
            InboundMessage(
                route_key=phone_number_id,
                channel_source="whatsapp",
                contact_id=contact,
                contact_user_id=str(msg.get("from_user_id") or user_ids.get(contact, "")),
                contact_name=names.get(contact, ""),
                provider_message_id=str(msg["id"]),
                text=text,
                attachments=attachments,
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

    business_number = str((value.get("metadata") or {}).get("display_phone_number", ""))

    def echo(msg) -> list:
        """smb_message_echoes: someone at the shop wrote from the WhatsApp Business app on the same
        number (coexistence); the API's own sends never come back this way. A person took over:
        kept as a human reply, and the bot pauses. Edits, deletions and reactions change nothing."""
        if not isinstance(msg, dict) or not msg.get("id") or msg.get("type") in whatsapp_content.EVENT_TYPES:
            return []
        if str(msg.get("to", "")) == business_number:
            contact, user_id = str(msg.get("from") or ""), str(msg.get("from_user_id") or "")
        else:
            contact, user_id = str(msg.get("to") or ""), str(msg.get("to_user_id") or "")
        contact = contact or user_id
        if not contact:
            return []
        text, attachments = whatsapp_content.describe(msg)
        return [HumanReply(route_key=phone_number_id, channel_source="whatsapp", contact_id=contact,
                           provider_message_id=str(msg["id"]), text=text or _attachment_text(attachments),
                           contact_name=names.get(contact, ""), contact_user_id=user_id)]

    events = each_item(as_list(value.get("messages"), "value.messages"), message, "WhatsApp message")
    events += each_item(as_list(value.get("statuses"), "value.statuses"), status_update, "WhatsApp status")
    events += each_item(as_list(value.get("message_echoes"), "value.message_echoes"), echo, "WhatsApp echo")
    return events


def _attachment_text(attachments: list[dict]) -> str:
    return " ".join(f"[{a.get('type', 'file')}]" for a in attachments) or "[message]"


def _messaging_item(account_id: str, channel: str, item: dict) -> list:
    sender = str((item.get("sender") or {}).get("id", ""))
    sent_at = from_unix(item.get("timestamp"))
    message = item.get("message")
    if isinstance(message, dict):
        if message.get("is_echo"):
            return _messenger_echo(account_id, channel, item, message)
        if sender == account_id:
            return []
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
        # `mids` "may not be present"; the watermark always is: everything sent before it arrived.
        mids = item["delivery"].get("mids") or []
        if mids:
            return [StatusUpdate(account_id, str(mid), "delivered") for mid in mids]
        watermark = from_unix(item["delivery"].get("watermark"))
        return [ReadUpTo(account_id, channel, sender, watermark, status="delivered")] if watermark else []
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
    if isinstance(item.get("referral"), dict) and sender and sender != account_id:
        return [_referral(account_id, channel, sender, sent_at, item)]
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


def _referral(account_id: str, channel: str, sender: str, sent_at, item: dict) -> InboundMessage:
    """messaging_referrals: a customer who already has a thread opened it again from an ad, an
    m.me / ig.me link (its `ref` is the shop's own tag) or the chat plugin, without a message yet.
    Kept as context for the agent's next answer, never answered itself."""
    referral = item["referral"]
    ad = referral.get("ads_context_data") if isinstance(referral.get("ads_context_data"), dict) else {}
    ref = str(referral.get("ref") or "")
    note = whatsapp_content.referral_note(referral.get("source"), ad.get("ad_title") or (f"“{ref}”" if ref else ""))
    return InboundMessage(
        account_id, channel, sender, f"referral:{sender}:{item.get('timestamp')}", text=note,
        attachments=[whatsapp_content.referral_attachment(referral)], triggers_turn=False, sent_at=sent_at,
    )


def _messenger_echo(account_id: str, channel: str, item: dict, message: dict) -> list:
    """Every message the page or Instagram account sends comes back as an echo. `app_id` names
    the app that sent it: ours (META_APP_ID) is the relay's own send; any other (the Page inbox,
    Meta Business Suite, the Instagram app, another tool) is a person at the shop taking over:
    kept as a human reply, and the bot pauses. Without META_APP_ID our own sends are still
    recognised, by their message id or, before the relay has recorded it, by their text."""
    app_id = str(message.get("app_id") or "")
    if settings.META_APP_ID and app_id == str(settings.META_APP_ID):
        return []
    contact = str((item.get("recipient") or {}).get("id", ""))
    if not contact or not message.get("mid") or contact == account_id:
        return []
    attachments = [{"type": a.get("type", "file")} for a in message.get("attachments") or [] if isinstance(a, dict)]
    return [HumanReply(route_key=account_id, channel_source=channel, contact_id=contact,
                       provider_message_id=str(message["mid"]),
                       text=message.get("text") or _attachment_text(attachments))]


def _messenger_message(account_id, channel, sender, sent_at, message: dict) -> InboundMessage:
    attachments = [
        {"type": a.get("type", "file"), "url": (a.get("payload") or {}).get("url", ""),
         "media_id": str((a.get("payload") or {}).get("attachment_id", ""))}
        for a in message.get("attachments") or []
        if isinstance(a, dict)
    ]
    if isinstance(message.get("quick_reply"), dict):
        attachments.append({"type": "quick_reply", "payload": message["quick_reply"].get("payload", "")})
    notes = []
    reply_to = message.get("reply_to") if isinstance(message.get("reply_to"), dict) else {}
    if reply_to.get("mid"):
        attachments.append({"type": "reply_to", "message_id": reply_to["mid"]})
    if isinstance(reply_to.get("story"), dict):  # Instagram: an answer to the shop's story
        story = reply_to["story"]
        notes.append("[replied to your story]")
        attachments.append({"type": "story_reply", "url": story.get("url", ""), "story_id": str(story.get("id", ""))})
    referral = message.get("referral") if isinstance(message.get("referral"), dict) else {}
    product = referral.get("product") if isinstance(referral.get("product"), dict) else {}
    if product.get("id"):  # Instagram Shop / Messenger: the product the customer asks about
        notes.append(f"[asking about product {product['id']}]")
        attachments.append({"type": "referred_product", "product_id": str(product["id"])})
    elif referral:
        ad = referral.get("ads_context_data") if isinstance(referral.get("ads_context_data"), dict) else {}
        notes.append(whatsapp_content.referral_note(referral.get("source"), ad.get("ad_title")))
        attachments.append(whatsapp_content.referral_attachment(referral))
    deleted = bool(message.get("is_deleted"))
    text = " ".join([*notes, message.get("text", "") or ""]).strip()
    mid = str(message.get("mid") or f"{sender}:{sent_at}")
    return InboundMessage(
        account_id, channel, sender, f"deleted:{mid}" if deleted else mid,  # a deletion carries the message's own id
        text="[deleted a message]" if deleted else text,
        attachments=attachments, triggers_turn=not deleted and not message.get("is_unsupported"), sent_at=sent_at,
    )
