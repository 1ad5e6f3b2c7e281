"""What every provider parser produces: provider-neutral inbound events."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone


class UnexpectedShape(ValueError):
    """Valid JSON that is not a delivery this endpoint understands (answered 200, counted)."""


@dataclass
class InboundMessage:
    """A message the contact sent (or an event about one, when `triggers_turn` is False)."""

    route_key: str  # the binding's external_id (phone_number_id, page id, ...) or "" when routed by token
    channel_source: str
    contact_id: str
    provider_message_id: str
    text: str = ""
    contact_name: str = ""
    attachments: list[dict] = field(default_factory=list)
    # Reactions, edits, deletions and system notices are kept for context but never answered.
    triggers_turn: bool = True
    sent_at: datetime | None = None
    external_chatwoot_id: str = ""
    external_account_id: str = ""


@dataclass
class StatusUpdate:
    """A provider says where one of our outbound messages is (sent, delivered, read, failed)."""

    route_key: str
    provider_message_id: str
    status: str
    error: str = ""
    idempotency_key: str = ""


@dataclass
class ReadUpTo:
    """Messenger/Instagram read receipts: everything sent to the contact up to `watermark` was read."""

    route_key: str
    channel_source: str
    contact_id: str
    watermark: datetime


@dataclass
class HumanReply:
    """A human agent answered in the provider's own inbox (Chatwoot): store it and pause the bot."""

    route_key: str
    channel_source: str
    contact_id: str
    provider_message_id: str
    text: str
    contact_name: str = ""
    external_chatwoot_id: str = ""
    external_account_id: str = ""


def from_unix(value) -> datetime | None:
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        return None
    if seconds > 1e12:  # milliseconds (Messenger)
        seconds /= 1000
    return datetime.fromtimestamp(seconds, tz=timezone.utc)


def require(mapping, key: str, what: str):
    if not isinstance(mapping, dict) or key not in mapping:
        raise UnexpectedShape(f"{what} has no '{key}'")
    return mapping[key]
