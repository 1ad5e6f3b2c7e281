"""The WhatsApp message object (Meta Cloud API; YCloud mirrors it) → text, attachments, turn or not."""

from __future__ import annotations

import json

MEDIA_TYPES = ("image", "video", "audio", "document", "sticker")
# Never answered: the contact reacted, edited, deleted, or WhatsApp reported a system change.
EVENT_TYPES = ("reaction", "edit", "revoke", "system", "ephemeral", "request_welcome")


def is_bsuid(contact_id: str) -> bool:
    """A WhatsApp business-scoped user id ("US.13491208655302741918", parent ids "US.ENT.…"): what
    Meta sends instead of the phone number for a customer who uses a username and hides it."""
    return "." in contact_id and not contact_id.lstrip("+").isdigit()


def _media(msg: dict, kind: str) -> tuple[str, list[dict]]:
    media = msg.get(kind) or {}
    attachment = {
        "type": kind,
        "media_id": str(media.get("id", "")),
        "mime_type": media.get("mime_type", ""),
    }
    for key in ("sha256", "filename", "url", "link", "animated", "voice"):
        if key in media:
            attachment[key] = media[key]
    return media.get("caption", "") or "", [attachment]


def _interactive(msg: dict) -> tuple[str, list[dict]]:
    interactive = msg.get("interactive") or {}
    kind = interactive.get("type", "")
    if kind == "nfm_reply":  # a WhatsApp Flow's answers: a JSON string of the form's fields
        reply = interactive.get("nfm_reply")
        return _flow_reply(reply if isinstance(reply, dict) else {})
    reply = interactive.get(kind) if kind else None
    if isinstance(reply, dict):
        return reply.get("title", "") or "", [{"type": kind, "id": reply.get("id", ""), **(
            {"description": reply["description"]} if "description" in reply else {})}]
    return "[unsupported interactive message]", [{"type": "interactive"}]


def _flow_reply(reply: dict) -> tuple[str, list[dict]]:
    raw = reply.get("response_json") or ""
    try:
        answers = json.loads(raw) if isinstance(raw, str) else raw
    except ValueError:
        answers = None
    if isinstance(answers, dict):
        fields = ", ".join(f"{key}: {value}" for key, value in answers.items() if key != "flow_token")
        text = f"[form reply] {fields}" if fields else "[form reply]"
    else:
        text = f"[form reply] {raw}".strip()
    return text, [{"type": "nfm_reply", "name": reply.get("name", ""), "response_json": raw}]


def _location(msg: dict) -> tuple[str, list[dict]]:
    loc = msg.get("location") or {}
    label = " ".join(str(loc[k]) for k in ("name", "address") if loc.get(k))
    where = f"{loc.get('latitude')},{loc.get('longitude')}"
    return f"[location] {label} ({where})".replace("  ", " ").strip(), [{"type": "location", **loc}]


def _contacts(msg: dict) -> tuple[str, list[dict]]:
    cards = msg.get("contacts") or []
    names = [((c.get("name") or {}).get("formatted_name") or "") for c in cards]
    return "[contacts] " + ", ".join(n for n in names if n), [{"type": "contacts", "contacts": cards}]


def _order(msg: dict) -> tuple[str, list[dict]]:
    """A cart sent from the catalogue: every item (quantity, product id, unit price) and the
    customer's note, if any (`order.text`)."""
    order = msg.get("order") or {}
    items = [i for i in order.get("product_items") or [] if isinstance(i, dict)]

    def item(i: dict) -> str:
        price = f" at {i['item_price']} {i.get('currency', '')}".rstrip() if i.get("item_price") is not None else ""
        return f"{i.get('quantity')}× {i.get('product_retailer_id')}{price}"

    text = f"[order] {', '.join(item(i) for i in items)}".strip()
    if order.get("text"):
        text += f" — note: {order['text']}"
    return text, [{"type": "order", **order}]


def _event(msg: dict, kind: str) -> str:
    if kind == "reaction":
        reaction = msg.get("reaction") or {}
        emoji = reaction.get("emoji") or ""
        target = reaction.get("message_id", "")
        return f"[reaction {emoji} to {target}]" if emoji else f"[reaction removed from {target}]"
    if kind == "edit":
        edited = (msg.get("edit") or {}).get("message") or {}
        text, _ = describe(edited) if edited else ("", [])
        return f"[edited a message] {text}".strip()
    if kind == "revoke":
        return "[deleted a message]"
    if kind == "system":
        return f"[system] {(msg.get('system') or {}).get('body', '')}".strip()
    return f"[{kind}]"


def describe(msg: dict) -> tuple[str, list[dict]]:
    """(text, attachments) of one WhatsApp message object, whatever its type."""
    kind = msg.get("type", "")
    if kind == "text":
        return (msg.get("text") or {}).get("body", ""), []
    if kind in MEDIA_TYPES:
        return _media(msg, kind)
    if kind == "interactive":
        return _interactive(msg)
    if kind == "button":
        button = msg.get("button") or {}
        return button.get("text", ""), [{"type": "button", "payload": button.get("payload", "")}]
    if kind == "location":
        return _location(msg)
    if kind == "contacts":
        return _contacts(msg)
    if kind == "order":
        return _order(msg)
    if kind in EVENT_TYPES:
        return _event(msg, kind), [{"type": kind}]
    return "[unsupported message type]", [{"type": kind or "unsupported"}]


def triggers_turn(msg: dict) -> bool:
    return msg.get("type", "") not in EVENT_TYPES


def customer_message(msg: dict) -> tuple[str, list[dict]]:
    """describe() and what the message came with, for the agent and for staff: the catalogue
    product a customer asks about (`context.referred_product`), the ad or post that opened the
    chat (`referral`, click-to-WhatsApp), and the message it answers or that it forwards."""
    text, attachments = describe(msg)
    notes = []
    context = msg.get("context") if isinstance(msg.get("context"), dict) else {}
    product = context.get("referred_product")
    if isinstance(product, dict) and product.get("product_retailer_id"):
        notes.append(f"[asking about product {product['product_retailer_id']}]")
        attachments.append({"type": "referred_product", **product})
    referral = msg.get("referral")
    if isinstance(referral, dict):
        notes.append(referral_note(referral.get("source_type"), referral.get("headline") or referral.get("body")))
        attachments.append(referral_attachment(referral))
    return " ".join([*notes, text]).strip(), attachments + context_attachment(msg)


def referral_attachment(referral: dict) -> dict:
    """A referral's plain fields as an attachment; its own `type` (Messenger's OPEN_THREAD) kept as
    `referral_type`, so the attachment's type stays "referral"."""
    fields = {k: v for k, v in referral.items() if isinstance(v, (str, int, float))}
    if "type" in fields:
        fields["referral_type"] = fields.pop("type")
    return {**fields, "type": "referral"}


def referral_note(source_type, title) -> str:
    source = {"ad": "an ad", "ads": "an ad", "post": "a post"}.get(str(source_type or "").lower(), "a link")
    return f"[came from {source}: {title}]" if title else f"[came from {source}]"


def context_attachment(msg: dict) -> list[dict]:
    """Replies and forwards carry a context: keep which message was answered."""
    context = msg.get("context") or {}
    if context.get("id"):
        return [{"type": "reply_to", "message_id": context["id"]}]
    if context.get("forwarded") or context.get("frequently_forwarded"):
        return [{"type": "forwarded", "frequently": bool(context.get("frequently_forwarded"))}]
    return []
