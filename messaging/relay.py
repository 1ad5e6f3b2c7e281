"""The Universal Delivery Relay: every outbound message (agent, staff, API) leaves through here.

Queueing: relay_parts() stores each part as a queued ChatMessage and claims the recipient lane's
next free slot in one SQL statement, so spacing holds across processes and restarts. The lane
row also says when its next queued message may leave (`due_at`): an idle lane becomes due when a
message arrives, and every send moves it on.

Sending: relay dispatchers (one per worker process, messaging/dispatcher.py) claim due lanes in
batches (FOR UPDATE SKIP LOCKED, so any number of them share the work), send each lane's next
message at its due time and record the result, which moves the lane on:
- sent: the next message is due at its slot and at least the spacing after the real send;
- retryable failure (timeout, connection error, 5xx, 429): the same message is due again after
  an exponential backoff with jitter, so the lane keeps its order;
- permanent failure (other 4xx, no credentials, after the last attempt): the next one is due.
A lane has one message in flight at a time, so order and spacing hold; lanes never wait for each
other. Every time that spacing compares (slots, due times, the last send, retries) is read from
the database's clock, never a web or worker machine's: machines whose clocks disagree still
space a recipient's messages by the full gap (a dispatcher turns "due in N seconds" into a wait
on its own monotonic clock). A dispatcher holds a PostgreSQL advisory lock while it lives: lanes
claimed by one that died (kill -9) are taken over after RELAY_ORPHAN_SECONDS, longer than a
provider call can last, and their message is sent again with the same idempotency key.

There is no job per message: a procrastinate job per send spent most of its time in the job
queue's own bookkeeping (bench/README.md has both designs side by side).
"""

from __future__ import annotations

import logging
import random
import secrets
import time
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from messaging import events
from messaging.models import (
    ChannelBinding,
    ChatConversation,
    ChatMessage,
    DeliveryAttempt,
    DeliveryLane,
    Direction,
    MessageStatus,
)
from messaging.providers import DeliveryError, SendResult, get_provider
from tenants.scoping import tenant_scope

logger = logging.getLogger(__name__)

# Characters per message each channel accepts; longer text is split on word boundaries.
# Instagram: Meta's text "must be UTF-8 and less than 1000 bytes", so at most 999 of them.
CHANNEL_LIMITS = {"whatsapp": 4096, "facebook": 2000, "instagram": 999, "playground": 4096}
LIMITS_IN_BYTES = {"instagram"}
# Dispatchers hold pg_advisory_lock(LOCK_CLASS, <their id>) while they live; NOTIFY on
# WAKE_CHANNEL tells them a lane is due now (they also poll every RELAY_POLL_SECONDS).
LOCK_CLASS = 0x52454C41
WAKE_CHANNEL = "relay_due"

MESSAGES, LANES, ATTEMPTS = ChatMessage._meta.db_table, DeliveryLane._meta.db_table, DeliveryAttempt._meta.db_table


def new_owner_id() -> int:
    """A dispatcher's id: the second key of its advisory lock (a positive int4)."""
    return secrets.randbelow(2**31 - 2) + 1


def split_text(text: str, limit: int, *, in_bytes: bool = False) -> list[str]:
    """Split on paragraph, line, sentence or word boundaries; never lose a character. `in_bytes`:
    the limit counts UTF-8 bytes (Instagram's does: an accented or emoji-rich reply reaches 1,000
    bytes long before 1,000 characters)."""
    def size(value: str) -> int:
        return len(value.encode()) if in_bytes else len(value)

    def head(value: str) -> str:  # the longest prefix within the limit
        return value.encode()[:limit].decode("utf-8", "ignore") if in_bytes else value[:limit]

    text = text.strip()
    parts: list[str] = []
    while size(text) > limit:
        window = head(text)
        cut = max(window.rfind(sep) for sep in ("\n\n", "\n", ". ", " "))
        cut = cut + 1 if cut > len(window) // 2 else len(window)
        parts.append(text[:cut].strip())
        text = text[cut:].strip()
    if text:
        parts.append(text)
    return parts


def spacing_for(provider_name: str) -> float:
    return settings.RELAY_SPACING_SECONDS if getattr(get_provider(provider_name), "spaced", True) else 0.0


def claim_slot(*, tenant_id: int, provider: str, recipient: str, now: datetime | None,
               spacing: float) -> tuple[int, datetime]:
    """Atomically take the lane's next free moment (≥ now, the database's clock unless a test
    gives one) and push it `spacing` further. An idle lane becomes due at that moment (or the
    spacing after its last send), and dispatchers are woken when that is now. The lane row stays
    locked until the caller's transaction ends."""
    gap = timedelta(seconds=spacing)
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            WITH t AS (SELECT COALESCE(%(now)s::timestamptz, statement_timestamp()) AS now),
                 lane AS (
                INSERT INTO {LANES} AS l (tenant_id, provider, recipient, next_free_at, due_at)
                SELECT %(tenant)s, %(provider)s, %(recipient)s, t.now + %(gap)s, t.now FROM t
                ON CONFLICT (tenant_id, provider, recipient) DO UPDATE
                   SET next_free_at = GREATEST(l.next_free_at, (SELECT now FROM t)) + %(gap)s,
                       due_at = CASE WHEN l.due_at IS NULL AND l.claimed_by IS NULL
                                     THEN GREATEST(l.next_free_at, (SELECT now FROM t), l.last_sent_at + %(gap)s)
                                     ELSE l.due_at END
                RETURNING id, next_free_at - %(gap)s AS slot, due_at)
            SELECT id, slot, CASE WHEN due_at <= (SELECT now FROM t) + %(ahead)s
                                  THEN pg_notify('{WAKE_CHANNEL}', '') END FROM lane
            """,
            {"tenant": tenant_id, "provider": provider, "recipient": recipient, "now": now, "gap": gap,
             "ahead": timedelta(seconds=settings.RELAY_POLL_SECONDS)},
        )
        lane_id, slot, _ = cursor.fetchone()
    return lane_id, slot


def queue_message(message: ChatMessage, conversation, *, now: datetime | None = None) -> None:
    """Claim the lane slot (inside the caller's transaction); the lane's dispatcher reaches this
    message in slot order."""
    lane_id, slot = claim_slot(
        tenant_id=message.tenant_id, provider=message.provider, recipient=conversation.contact_external_id,
        now=now, spacing=spacing_for(message.provider),
    )
    message.scheduled_at, message.lane_id = slot, lane_id
    message.save(update_fields=["scheduled_at", "lane"])


def recover_stranded_lanes(*, older_than_seconds: float = 60) -> int:
    """Lanes with queued messages but neither a due time nor a dispatcher (a database restored
    from a backup, a hand edit) become due again: the periodic safety net under the dispatchers."""
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            UPDATE {LANES} l
               SET due_at = GREATEST(q.first_slot, now(), l.last_sent_at + make_interval(secs => %(gap)s))
              FROM (SELECT lane_id, min(scheduled_at) AS first_slot FROM {MESSAGES}
                     WHERE status = %(queued)s AND lane_id IS NOT NULL GROUP BY lane_id
                    HAVING min(scheduled_at) < now() - make_interval(secs => %(older)s)) q
             WHERE l.id = q.lane_id AND l.due_at IS NULL AND l.claimed_by IS NULL
            RETURNING l.id
            """,
            {"gap": settings.RELAY_SPACING_SECONDS, "queued": MessageStatus.QUEUED, "older": older_than_seconds},
        )
        restarted = len(cursor.fetchall())
    if restarted:
        logger.warning("Relay: %d lane(s) had queued messages but no due time; they are due again", restarted)
    return restarted


def prune_delivery_attempts(*, keep_days: int | None = None, batch: int = 5000) -> int:
    """Delete delivery attempts older than `keep_days` (DELIVERY_ATTEMPTS_KEEP_DAYS; 0 keeps them
    all), oldest first, in batches along the primary key (ids grow with time), so the periodic job
    never scans the table nor holds a long transaction. Messages keep their status and error."""
    keep_days = settings.DELIVERY_ATTEMPTS_KEEP_DAYS if keep_days is None else keep_days
    if keep_days <= 0:
        return 0
    deleted = 0
    with connection.cursor() as cursor:
        while True:
            cursor.execute(
                f"""
                DELETE FROM {ATTEMPTS} WHERE id IN (
                    SELECT id FROM {ATTEMPTS} ORDER BY id LIMIT %(batch)s)
                  AND started_at < statement_timestamp() - make_interval(days => %(days)s)
                """,
                {"batch": batch, "days": keep_days},
            )
            deleted += cursor.rowcount
            if cursor.rowcount < batch:  # reached attempts young enough to keep
                break
    if deleted:
        logger.info("Relay: deleted %d delivery attempt(s) older than %s days", deleted, keep_days)
    return deleted


def relay_parts(*, conversation, parts: list[str], role: str, sent_by=None, turn_id: str = "", now=None) -> list[ChatMessage]:
    """Store and queue each part (split to the channel's limit) in order, in one transaction."""
    limit = CHANNEL_LIMITS.get(conversation.channel_source, 1000)
    messages = []
    with tenant_scope(conversation.tenant_id), transaction.atomic():
        for part in parts:
            for chunk in split_text(part, limit, in_bytes=conversation.channel_source in LIMITS_IN_BYTES):
                message = ChatMessage.objects.create(
                    tenant_id=conversation.tenant_id, conversation=conversation, direction=Direction.OUT, role=role,
                    text=chunk, provider=conversation.provider, status=MessageStatus.QUEUED, sent_by=sent_by,
                    turn_id=turn_id or "",
                )
                queue_message(message, conversation, now=now)
                events.message_created(message)
                messages.append(message)
        if messages:
            type(conversation).objects.filter(pk=conversation.pk).update(last_message_at=timezone.now())
    return messages


@dataclass
class Outcome:
    status: str
    detail: str = ""
    message_id: int | None = None
    retry_at: datetime | None = None


@dataclass
class Claim:
    """A lane a dispatcher holds, and (once prepared) its next message and the attempt at it."""

    lane_id: int
    provider: str
    due_at: datetime
    # Seconds from the claim until due_at by the database's clock, and when (time.monotonic()) the
    # claim was read: the dispatcher waits the rest on its own clock, whatever its wall clock says.
    due_in: float = 0.0
    claimed_monotonic: float = 0.0
    message: ChatMessage | None = None
    attempt_id: int | None = None
    attempt_number: int | None = None  # in the message's delivery log (numbered on across staff retries)

    def seconds_until_due(self) -> float:
        return self.due_in - (time.monotonic() - self.claimed_monotonic)


# Lanes due by `horizon` (tests, a shell) or, by default, within `ahead` of the database's now.
CLAIM_SQL = f"""
    WITH due AS (SELECT id FROM {LANES}
                  WHERE due_at <= COALESCE(%(horizon)s::timestamptz, statement_timestamp() + %(ahead)s)
                    AND claimed_by IS NULL
                  ORDER BY due_at LIMIT %(limit)s FOR UPDATE SKIP LOCKED)
    UPDATE {LANES} l SET claimed_by = %(owner)s, claimed_at = now() FROM due WHERE l.id = due.id
    RETURNING l.id, l.provider, l.due_at, extract(epoch FROM l.due_at - clock_timestamp())::float8
"""


def claim_params(*, owner: int, limit: int, ahead: float = 0.0, horizon: datetime | None = None) -> dict:
    return {"owner": owner, "limit": limit, "ahead": timedelta(seconds=ahead), "horizon": horizon}


# Lanes back to the pool: those held by dispatchers that are gone (their advisory lock ended with
# their session) for longer than a provider call can last, and those this dispatcher holds but
# no longer works on (a send that raised). Their message is sent again, with the same key.
RELEASE_SQL = f"""
    UPDATE {LANES} SET claimed_by = NULL, claimed_at = NULL, due_at = COALESCE(due_at, now())
     WHERE claimed_by IS NOT NULL
       AND CASE WHEN claimed_by = %(owner)s THEN NOT (id = ANY(%(working)s::bigint[]))
                ELSE claimed_at < now() - make_interval(secs => %(grace)s)
                     AND claimed_by <> ALL (ARRAY(SELECT objid::bigint FROM pg_locks
                                                   WHERE locktype = 'advisory' AND classid = {LOCK_CLASS}
                                                     AND objsubid = 2 AND granted)) END
    RETURNING id
"""


def claims_from_rows(rows) -> list[Claim]:
    read = time.monotonic()
    return [Claim(lane_id=r[0], provider=r[1], due_at=r[2], due_in=r[3], claimed_monotonic=read) for r in rows]


def release_params(owner: int, working) -> dict:
    return {"owner": owner, "working": list(working), "grace": settings.RELAY_ORPHAN_SECONDS}


def _backoff_seconds(attempt: int, retry_after: float | None) -> float:
    base = settings.RELAY_RETRY_BASE_SECONDS * (2 ** (attempt - 1))
    delay = min(base, settings.RELAY_RETRY_MAX_SECONDS)
    delay = delay * random.uniform(0.5, 1.0)  # jitter: retries of many messages do not stampede
    # The provider's Retry-After is honoured up to the longest backoff: a day's wait (or an absurd
    # one) would park the message and everything after it to that customer, unseen; this way it
    # fails visibly after its attempts, with the retry action.
    return max(delay, min(retry_after or 0, settings.RELAY_RETRY_MAX_SECONDS))


_LOAD_SQL: str | None = None
_LOAD_MODELS = (ChatMessage, ChatConversation, ChannelBinding)


def _load_heads(lane_ids: list[int]) -> dict[int, ChatMessage]:
    """Each lane's next queued message with its conversation and binding, in one query whose SQL
    is built once per process (the ORM's select_related compiles the join anew every time)."""
    global _LOAD_SQL
    if _LOAD_SQL is None:
        columns = ", ".join(f"{alias}.{connection.ops.quote_name(field.column)}"
                            for alias, model in zip("mcb", _LOAD_MODELS) for field in model._meta.concrete_fields)
        _LOAD_SQL = (
            f"SELECT DISTINCT ON (m.lane_id) {columns} FROM {MESSAGES} m "
            f"JOIN {LANES} l ON l.id = m.lane_id AND l.tenant_id = m.tenant_id "
            f"JOIN {ChatConversation._meta.db_table} c ON c.id = m.conversation_id AND c.tenant_id = m.tenant_id "
            f"LEFT JOIN {ChannelBinding._meta.db_table} b ON b.id = c.binding_id "
            "WHERE m.lane_id = ANY(%s) AND m.status = %s ORDER BY m.lane_id, m.scheduled_at, m.id"
        )
    with connection.cursor() as cursor:
        cursor.execute(_LOAD_SQL, [lane_ids, MessageStatus.QUEUED])
        rows = cursor.fetchall()
    heads = {}
    for row in rows:
        instances, start = [], 0
        for model in _LOAD_MODELS:
            fields = model._meta.concrete_fields
            values = row[start:start + len(fields)]
            start += len(fields)
            instances.append(None if values[0] is None else model.from_db(
                connection.alias, [f.attname for f in fields], [
                    f.from_db_value(v, None, connection) if v is not None and hasattr(f, "from_db_value") else v
                    for f, v in zip(fields, values)]))
        message, conversation, binding = instances
        conversation.binding = binding
        message.conversation = conversation
        heads[message.lane_id] = message
    return heads


def prepare(claims: list[Claim], owner: int) -> list[Claim]:
    """Load each claimed lane's next message and count the attempt at it: its DeliveryAttempt row
    is committed before the call, so an interrupted try stays visible. `attempts` counts the tries
    since the message was last queued (retries and the give-up count from it); the attempt rows
    are numbered on across a staff retry, so the message's delivery log reads in order. Lanes with nothing queued
    are handed back. Returns the claims that have a message to send."""
    if not claims:
        return []
    heads = _load_heads([claim.lane_id for claim in claims])
    ready = [claim for claim in claims if claim.lane_id in heads]
    for claim in claims:
        if claim.lane_id not in heads:
            with transaction.atomic():
                _lock_lane(claim.lane_id)
                _hand_over(claim.lane_id, owner, spacing=spacing_for(claim.provider))
    if not ready:
        return []
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            WITH counted AS (UPDATE {MESSAGES} SET attempts = attempts + 1 WHERE id = ANY(%s)
                             RETURNING id, tenant_id, attempts),
                 logged AS (
                INSERT INTO {ATTEMPTS} (tenant_id, message_id, number, started_at, outcome, http_status, duration_ms, error)
                SELECT tenant_id, id, COALESCE((SELECT max(a.number) FROM {ATTEMPTS} a WHERE a.message_id = counted.id),
                                               0) + 1,
                       now(), '', NULL, NULL, '' FROM counted RETURNING message_id, id, number)
            SELECT logged.message_id, logged.id, logged.number, counted.attempts
              FROM logged JOIN counted ON counted.id = logged.message_id
            """,
            [[heads[claim.lane_id].pk for claim in ready]],
        )
        attempts = {message_id: (attempt_id, number, count) for message_id, attempt_id, number, count in cursor.fetchall()}
    for claim in ready:
        claim.message = heads[claim.lane_id]
        claim.attempt_id, claim.attempt_number, claim.message.attempts = attempts[claim.message.pk]
    return ready


def _lock_lane(lane_id: int) -> None:
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT 1 FROM {LANES} WHERE id = %s FOR UPDATE", [lane_id])


def _hand_over(lane_id: int, owner: int, *, spacing: float, status_event: str | None = None) -> None:
    """Release the lane, inside the caller's transaction and after its row is locked, in a
    statement of its own (so it sees every message queued by whoever held the lock before): its
    next queued message is due at its slot and at least `spacing` after the last real send, or
    the lane goes idle. `status_event` is published in the same statement."""
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            WITH nxt AS (SELECT scheduled_at FROM {MESSAGES} WHERE lane_id = %(lane)s AND status = %(queued)s
                          ORDER BY scheduled_at, id LIMIT 1),
                 l AS (UPDATE {LANES} SET claimed_by = NULL, claimed_at = NULL,
                              due_at = (SELECT GREATEST(nxt.scheduled_at,
                                                        {LANES}.last_sent_at + make_interval(secs => %(gap)s)) FROM nxt)
                        WHERE id = %(lane)s AND claimed_by = %(owner)s RETURNING id)
            SELECT (SELECT count(*) FROM l),
                   {events.notify_sql().replace("%s", "%(event)s") if status_event is not None else "NULL"}
            """,
            {"lane": lane_id, "queued": MessageStatus.QUEUED, "gap": spacing, "owner": owner, "event": status_event},
        )


def release_claim(lane_id: int, owner: int, *, delay: float) -> None:
    """Hand a lane back after its send raised (a bug, the database gone): due again after `delay`."""
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {LANES} SET claimed_by = NULL, claimed_at = NULL, "
            "due_at = GREATEST(due_at, now() + make_interval(secs => %s)) WHERE id = %s AND claimed_by = %s",
            [delay, lane_id, owner],
        )


# Claims of one message beyond its retries: each attempt whose result could not be recorded (the
# database gone mid-record) is counted too, and past this the message fails instead of looping.
UNRECORDED_ATTEMPTS_ALLOWED = 3


def send_claim(claim: Claim, owner: int) -> Outcome:
    """Send a prepared lane's message and record the result (which moves the lane on)."""
    message = claim.message
    with tenant_scope(message.tenant_id):
        if message.attempts > settings.RELAY_MAX_ATTEMPTS + UNRECORDED_ATTEMPTS_ALLOWED:
            error = DeliveryError(f"Stopped after {message.attempts - 1} attempts whose results could not all be "
                                  "recorded (see the worker's log); retry it once that is fixed.", retryable=False)
            return _record(claim, owner, None, error, 0)
        provider = get_provider(message.provider)
        clock = time.monotonic()
        try:
            result = provider.send(message=message, conversation=message.conversation)
            error = None
        except DeliveryError as exc:
            result, error = None, exc
        except Exception as exc:  # a bug in a provider must not leave the message queued forever
            logger.exception("Provider %s crashed sending message %s", message.provider, message.pk)
            result, error = None, DeliveryError(f"{type(exc).__name__}: {exc}", retryable=False)
        duration = int((time.monotonic() - clock) * 1000)
        try:
            return _record(claim, owner, result, error, duration)
        except Exception:
            if error is not None:
                raise  # nothing left: the lane is released and the message tried again
            # It left. Whatever stopped the record (the provider's id clashing with a row written
            # meanwhile, say), it must not be sent again: record it as sent without the id.
            logger.exception("Message %s was sent but could not be recorded with its provider id; "
                             "recording it without", message.pk)
            return _record(claim, owner, SendResult("", result.http_status), None, duration)


# The attempt's result, in every outcome's statement. Its start is the database's time of the
# record less the call's measured duration: the same clock as the send times spacing counts from.
_FINISH_ATTEMPT = (f"UPDATE {ATTEMPTS} "
                   "SET started_at = statement_timestamp() - make_interval(secs => %(duration)s / 1000.0), "
                   "duration_ms = %(duration)s, outcome = %(outcome)s, http_status = %(http)s, error = %(error)s "
                   "WHERE id = %(attempt)s RETURNING id")


def _record(claim: Claim, owner: int, result, error, duration) -> Outcome:
    """One transaction: the attempt, the message and the lane. A success or a permanent failure
    locks the lane row in its first statement and hands the lane over in a second one. Only a
    queued message changes: a late record (of a dispatcher whose lane was taken over) never
    undoes what the other one recorded. The send time and the retry time are the database's
    (taken when the provider has answered, so spacing counts from after the send)."""
    message = claim.message
    if error is not None and error.retryable and message.attempts < settings.RELAY_MAX_ATTEMPTS:
        backoff = timedelta(seconds=_backoff_seconds(message.attempts, error.retry_after))
        with connection.cursor() as cursor:
            cursor.execute(
                f"""
                WITH a AS ({_FINISH_ATTEMPT}),
                     m AS (UPDATE {MESSAGES} SET error = %(error)s WHERE id = %(message)s AND status = %(queued)s
                           RETURNING id)
                UPDATE {LANES} SET claimed_by = NULL, claimed_at = NULL, due_at = statement_timestamp() + %(backoff)s
                 WHERE id = %(lane)s AND claimed_by = %(owner)s
                RETURNING due_at
                """,
                {"duration": duration, "outcome": "retry", "http": error.http_status,
                 "error": error.detail, "attempt": claim.attempt_id, "message": message.pk, "backoff": backoff,
                 "lane": claim.lane_id, "owner": owner, "queued": MessageStatus.QUEUED},
            )
            row = cursor.fetchone()  # none: the lane was taken over meanwhile, and is the other's to move on
            retry_at = row[0] if row else None
        logger.warning("Message %s attempt %s of %s (delivery log #%s) failed, retrying at %s: %s", message.pk,
                       message.attempts, settings.RELAY_MAX_ATTEMPTS, claim.attempt_number, retry_at, error.detail)
        return Outcome("retry", error.detail, message.pk, retry_at)
    if error is None:
        message.status, message.error = MessageStatus.SENT, ""
        message.provider_message_id = result.provider_message_id or None
        outcome, http_status = "sent", result.http_status
    else:
        message.status, message.error = MessageStatus.FAILED, error.detail
        outcome, http_status = "failed", error.http_status
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            f"""
            WITH a AS ({_FINISH_ATTEMPT}),
                 sent AS (SELECT CASE WHEN %(sent)s THEN statement_timestamp() END AS at),
                 l AS (UPDATE {LANES} SET last_sent_at = COALESCE((SELECT at FROM sent), last_sent_at)
                        WHERE id = %(lane)s RETURNING id)
            UPDATE {MESSAGES} m SET status = %(status)s, sent_at = (SELECT at FROM sent), error = %(error)s,
                   provider_message_id = CASE WHEN EXISTS (
                       SELECT 1 FROM {MESSAGES} o WHERE o.tenant_id = m.tenant_id AND o.provider = m.provider
                          AND o.provider_message_id = %(provider_id)s AND o.id <> m.id) THEN NULL
                       ELSE %(provider_id)s END
             WHERE id = %(message)s AND status = %(queued)s
            RETURNING provider_message_id, sent_at
            """,
            {"duration": duration, "outcome": outcome, "http": http_status,
             "error": message.error, "attempt": claim.attempt_id, "sent": error is None, "lane": claim.lane_id,
             "status": message.status, "provider_id": message.provider_message_id, "message": message.pk,
             "queued": MessageStatus.QUEUED},
        )
        stored = cursor.fetchone()
        if stored is not None:
            message.sent_at = stored[1]
        if stored is not None and message.provider_message_id and stored[0] is None:
            # Never resend what left because of bookkeeping (Chatwoot has no idempotency key):
            # the id is already another row's, e.g. an inbox echo stored as a human reply.
            logger.warning("Message %s was sent, but its provider id %s is already another message's; "
                           "stored without it", message.pk, message.provider_message_id)
            message.provider_message_id = None
        if error is not None and stored is not None and message.turn_id:
            _hold_rest_of_turn(message, claim.lane_id)
        # The lane row is locked by the first statement; the hand-over is the second. Spacing
        # counts from the last real send (a failed message did not leave).
        _hand_over(claim.lane_id, owner, spacing=spacing_for(claim.provider),
                   status_event=events.message_status_payload(message) if stored is not None else None)
    if error is not None:
        logger.error("Message %s failed after %s attempt(s) (delivery log #%s): %s", message.pk, message.attempts,
                     claim.attempt_number, error.detail)
    return Outcome(message.status, message.error, message.pk)


# The error of a part held back because an earlier part of the same reply failed.
HELD_PREFIX = "Not sent: an earlier part of this reply failed"


def _hold_rest_of_turn(failed: ChatMessage, lane_id: int) -> None:
    """An agent's reply whose part failed for good does not go on without it: its later parts
    fail too, naming the reason, so the customer never reads a reply's second half alone. A staff
    retry of the failed part sends them again with it (messaging.services.retry_message)."""
    error = f"{HELD_PREFIX} (message {failed.pk}): {failed.error}"[:2000]
    with connection.cursor() as cursor:
        cursor.execute(
            f"""UPDATE {MESSAGES} SET status = %(failed)s, error = %(held)s
                 WHERE lane_id = %(lane)s AND status = %(queued)s AND conversation_id = %(conversation)s
                   AND turn_id = %(turn)s AND id > %(message)s
                RETURNING id""",
            {"failed": MessageStatus.FAILED, "queued": MessageStatus.QUEUED, "lane": lane_id,
             "conversation": failed.conversation_id, "turn": failed.turn_id, "message": failed.pk, "held": error},
        )
        held = [row[0] for row in cursor.fetchall()]
    for message_id in held:  # the live view's status events, from what was just written
        events.message_status(ChatMessage(pk=message_id, tenant_id=failed.tenant_id, status=MessageStatus.FAILED,
                                          conversation_id=failed.conversation_id, error=error))
    if held:
        logger.warning("Message %s failed: %s later part(s) of its reply held back (%s)", failed.pk, len(held), held)


def run_due(*, now: datetime | None = None, limit: int = 100) -> list[Outcome]:
    """Claim the lanes due by `now` and send each one's next message, one after the other, here:
    a dispatcher's work without its clock (tests, a shell). One outcome per message sent."""
    owner = new_owner_id()
    with connection.cursor() as cursor:
        cursor.execute(CLAIM_SQL, claim_params(owner=owner, limit=limit, horizon=now))
        claims = claims_from_rows(cursor.fetchall())
    return [send_claim(claim, owner) for claim in prepare(claims, owner)]
