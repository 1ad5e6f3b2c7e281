"""What every provider parser produces: provider-neutral inbound events."""

from __future__ import annotations

import contextvars
import dataclasses
import functools
import logging
from dataclasses import dataclass, field
from datetime import datetime, timezone

from messaging.storable import storable_value

logger = logging.getLogger(__name__)


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
    # WhatsApp: the contact's business-scoped user id (BSUID), also when contact_id is their phone.
    contact_user_id: str = ""
    # Chatwoot: the other ids the contact may have been kept under (messaging.ingest._known_in_chatwoot).
    contact_aliases: tuple[str, ...] = ()


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
    """Messenger/Instagram read (or delivery) receipts: everything sent to the contact up to
    `watermark` was read (or delivered)."""

    route_key: str
    channel_source: str
    contact_id: str
    watermark: datetime
    status: str = "read"


@dataclass
class HumanReply:
    """A person at the shop answered in the provider's own inbox (Chatwoot; Meta's Page inbox,
    Business Suite, the Instagram app, the WhatsApp Business app): store it and pause the bot."""

    route_key: str
    channel_source: str
    contact_id: str
    provider_message_id: str
    text: str
    contact_name: str = ""
    external_chatwoot_id: str = ""
    external_account_id: str = ""
    # WhatsApp: the customer's business-scoped user id (BSUID), also when contact_id is their phone.
    contact_user_id: str = ""
    contact_aliases: tuple[str, ...] = ()


@dataclass
class ConversationResolved:
    """Staff resolved the conversation in the provider's own inbox (Chatwoot): ours closes and the
    bot's pause ends, so the customer's next message opens it again, to the bot."""

    route_key: str
    external_chatwoot_id: str


def from_unix(value) -> datetime | None:
    try:
        seconds = float(value)
        if seconds > 1e12:  # milliseconds (Messenger)
            seconds /= 1000
        return datetime.fromtimestamp(seconds, tz=timezone.utc)
    except (TypeError, ValueError, OverflowError, OSError):  # not a number, or no time a calendar has
        return None


@functools.cache
def _field_names(cls) -> tuple[str, ...]:
    return tuple(f.name for f in dataclasses.fields(cls))


def clean(event):
    """The event with every string (attachments included) storable in PostgreSQL (the event
    itself when nothing needed a change, as for nearly every one: no copy on the drain's path)."""
    changes = {}
    for name in _field_names(type(event)):
        value = getattr(event, name)
        fixed = storable_value(value)
        if fixed is not value:
            changes[name] = fixed
    return dataclasses.replace(event, **changes) if changes else event


SHAPE_ERRORS = (AttributeError, TypeError, KeyError, IndexError, ValueError, OverflowError)


def each_item(items, parse_one, what: str) -> list:
    """The events of every item of a delivery that parses: one odd item (a string where an object
    belongs) is skipped and logged, and the delivery's other messages are still stored."""
    events: list = []
    for index, item in enumerate(items):
        try:
            events += parse_one(item)
        except UnexpectedShape as exc:
            _skipped(f"{what} {index}: {exc}")
        except SHAPE_ERRORS as exc:
            _skipped(f"{what} {index}: a field has an unexpected type ({type(exc).__name__}: {exc})")
    return events


_skips: contextvars.ContextVar[list | None] = contextvars.ContextVar("webhook_parser_skips", default=None)


def _skipped(note: str) -> None:
    logger.warning("Skipping %s", note)
    notes = _skips.get()
    if notes is not None:
        notes.append(note)


class Events(list):
    """A parser's events, and the notes on the items it skipped (the inbox keeps such a delivery
    for the platform admin, so a skipped message can be processed again once the code reads it)."""

    skipped: list[str] = []


def parser(func):
    """A provider parser's guard: valid JSON whose fields have the wrong types (a string where an
    object belongs, a list for a number) is an unexpected shape (answered 200 and counted), not an
    error the inbox would try again five times; the events it yields are made storable. Items the
    parser skipped (each_item) are logged; a delivery of nothing but such items is counted too."""

    @functools.wraps(func)
    def parse(*args, **kwargs):
        token = _skips.set([])
        try:
            result = func(*args, **kwargs)
            skipped = _skips.get()
        except UnexpectedShape:
            raise
        except SHAPE_ERRORS as exc:
            raise UnexpectedShape(f"a field has an unexpected type ({type(exc).__name__}: {exc})") from exc
        finally:
            _skips.reset(token)
        events = result[1] if isinstance(result, tuple) else result
        if skipped and not events:  # nothing understood: the delivery is an unexpected shape (counted)
            raise UnexpectedShape("; ".join(skipped)[:500])
        events = Events(clean(event) for event in events)
        events.skipped = skipped
        return (result[0], events) if isinstance(result, tuple) else events

    return parse


def as_list(value, what: str) -> list:
    """A list field of a delivery: absent is empty; anything but a list is an unexpected shape."""
    if value is None:
        return []
    if not isinstance(value, list):
        raise UnexpectedShape(f"{what} is a {type(value).__name__}, not a list")
    return value


def require(mapping, key: str, what: str):
    if not isinstance(mapping, dict) or key not in mapping:
        raise UnexpectedShape(f"{what} has no '{key}'")
    return mapping[key]
