"""The Universal Delivery Relay: every outbound message (agent, staff, API) leaves through here.

relay_message() stores each part as a queued ChatMessage and claims the recipient lane's next
free slot in one SQL statement (so spacing holds across processes and restarts). Each lane has
at most one send job at a time: the lane's first message gets a job at its slot; the others wait
as queued rows, and every finished send schedules the job of the lane's next message (in slot
order, at its slot and at least the spacing after the real send). The lane row's lock decides
between "the running job takes it" and "start a job", so no message is left without one; a
periodic sweep restarts any lane whose job was lost anyway. Few jobs wait in the queue (one per
busy lane, not one per message), which keeps the workers' job fetch cheap at any backlog.

deliver() is the send job: it keeps the real gap from the previous send on the lane, calls the
provider with the message's idempotency key, records a DeliveryAttempt, and asks for a retry
with exponential backoff and jitter on timeouts, connection errors, 5xx and 429.
"""

from __future__ import annotations

import logging
import random
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
from messaging.providers import DeliveryError, get_provider
from messaging.upserts import defer_job_sql
from tenants.scoping import tenant_scope

logger = logging.getLogger(__name__)

# Characters per message each channel accepts; longer text is split on word boundaries.
CHANNEL_LIMITS = {"whatsapp": 4096, "facebook": 2000, "instagram": 1000, "playground": 4096}
# A send job that finds its lane busy a little longer sleeps; beyond this it is rescheduled.
MAX_INLINE_WAIT_SECONDS = 1.0


class RetryDelivery(Exception):
    """Raised by the send job so procrastinate re-runs the same job (its lane order is kept)."""

    def __init__(self, retry_at: datetime, reason: str):
        super().__init__(reason)
        self.retry_at = retry_at


def split_text(text: str, limit: int) -> list[str]:
    """Split on paragraph, line, sentence or word boundaries; never lose a character."""
    text = text.strip()
    parts: list[str] = []
    while len(text) > limit:
        window = text[:limit]
        cut = max(window.rfind(sep) for sep in ("\n\n", "\n", ". ", " "))
        cut = cut + 1 if cut > limit // 2 else limit
        parts.append(text[:cut].strip())
        text = text[cut:].strip()
    if text:
        parts.append(text)
    return parts


def claim_slot(*, tenant_id: int, provider: str, recipient: str, now: datetime, spacing: float) -> tuple[int, datetime]:
    """Atomically take the lane's next free moment (≥ now) and push it `spacing` further. The
    lane row stays locked until the caller's transaction ends."""
    gap = timedelta(seconds=spacing)
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            INSERT INTO {DeliveryLane._meta.db_table} (tenant_id, provider, recipient, next_free_at)
            VALUES (%s, %s, %s, %s)
            ON CONFLICT (tenant_id, provider, recipient) DO UPDATE
               SET next_free_at = GREATEST({DeliveryLane._meta.db_table}.next_free_at, %s) + %s
            RETURNING id, next_free_at
            """,
            [tenant_id, provider, recipient, now + gap, now, gap],
        )
        lane_id, next_free = cursor.fetchone()
    return lane_id, next_free - gap


def lane_lock(lane_id: int) -> str:
    return f"lane:{lane_id}"


def _job_time(due: datetime) -> datetime:
    """A scheduled job is only noticed at the workers' next poll: schedule it one polling interval
    early and let it wait the rest (at most that long) in _keep_spacing, so it leaves on time."""
    return due - timedelta(seconds=settings.PROCRASTINATE_POLLING_INTERVAL)


def _defer_send(tenant_id: int, message_id: int, lane_id: int, due: datetime) -> None:
    from messaging.tasks import send_message

    # The lock is a second guard: were a lane ever to get two jobs, they would still run in turn.
    send_message.configure(lock=lane_lock(lane_id), schedule_at=_job_time(due)).defer(
        tenant_id=tenant_id, message_id=message_id, lane_id=lane_id
    )


def _take_lane(lane_id: int) -> bool:
    """Mark the lane as having a send job; True when it had none (the caller must defer one).
    The caller holds the lane row lock (claim_slot), so a finishing job decides before or after."""
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {DeliveryLane._meta.db_table} SET has_send_job = true WHERE id = %s AND NOT has_send_job "
            "RETURNING id", [lane_id],
        )
        return cursor.fetchone() is not None


def queue_message(message: ChatMessage, conversation, *, now: datetime | None = None) -> None:
    """Claim the lane slot and, if the lane is idle, schedule its send job (inside the caller's
    transaction); otherwise the lane's running job reaches this message in slot order."""
    now = now or timezone.now()
    provider = get_provider(message.provider)
    spacing = settings.RELAY_SPACING_SECONDS if getattr(provider, "spaced", True) else 0
    lane_id, slot = claim_slot(
        tenant_id=message.tenant_id, provider=message.provider, recipient=conversation.contact_external_id,
        now=now, spacing=spacing,
    )
    message.scheduled_at, message.lane_id = slot, lane_id
    message.save(update_fields=["scheduled_at", "lane"])
    if _take_lane(lane_id):
        _defer_send(message.tenant_id, message.pk, lane_id, slot)


def _hand_over_lane(lane_id: int | None, *, after: datetime, spacing: float, locked: bool = False,
                    unless_running: bool = False, status_event: str | None = None) -> int | None:
    """The one place a lane passes on, inside the caller's transaction: the lane's next queued
    message gets its send job (at the later of its slot and `after` + spacing, a polling interval
    early) and the lane's has_send_job says whether it has one. Returns the job's message id.

    Runs after the lane row is locked (by the caller, or here), in a statement of its own, so it
    sees every message queued by whoever held the lock before. A job already waiting for the lane
    (or running, with `unless_running`: the sweep) is left to carry on, so a job re-run after a
    crash never starts a second chain. `status_event` is published in the same statement."""
    if lane_id is None:
        return None
    from messaging.tasks import send_message

    lanes = DeliveryLane._meta.db_table
    with connection.cursor() as cursor:
        if not locked:
            cursor.execute(f"SELECT 1 FROM {lanes} WHERE id = %s FOR UPDATE", [lane_id])
            if cursor.fetchone() is None:
                return None
        cursor.execute(
            f"""
            WITH nxt AS (SELECT id, scheduled_at FROM {ChatMessage._meta.db_table}
                          WHERE lane_id = %s AND status = %s ORDER BY scheduled_at, id LIMIT 1),
                 flag AS (UPDATE {lanes} SET has_send_job = EXISTS (SELECT 1 FROM nxt) WHERE id = %s
                          RETURNING tenant_id),
                 busy AS (SELECT EXISTS (SELECT 1 FROM procrastinate_jobs
                                          WHERE lock = %s AND status = ANY (%s::procrastinate_job_status[])) AS yes)
            SELECT CASE WHEN nxt.id IS NOT NULL AND NOT busy.yes THEN nxt.id END,
                   CASE WHEN nxt.id IS NOT NULL AND NOT busy.yes THEN {defer_job_sql(
                       lock="%s", queueing_lock="NULL",
                       args="jsonb_build_object('tenant_id', flag.tenant_id, 'message_id', nxt.id, 'lane_id', %s::bigint)",
                       at="GREATEST(nxt.scheduled_at, %s::timestamptz + make_interval(secs => %s::float8))"
                          " - make_interval(secs => %s::float8)")} END,
                   {events.notify_sql() if status_event is not None else "NULL"}
              FROM flag CROSS JOIN busy LEFT JOIN nxt ON true
            """,
            [lane_id, MessageStatus.QUEUED, lane_id, lane_lock(lane_id),
             ["todo", "doing"] if unless_running else ["todo"],
             send_message.queue, send_message.name, lane_lock(lane_id), lane_id, after, spacing,
             settings.PROCRASTINATE_POLLING_INTERVAL, *([status_event] if status_event is not None else [])],
        )
        row = cursor.fetchone()
    return row[0] if row else None


def recover_stranded_lanes(*, older_than_seconds: float = 60) -> int:
    """Restart lanes whose queued messages have no send job (a job that failed outright, a
    database restored from backup): the periodic safety net under the chain."""
    table, messages = DeliveryLane._meta.db_table, ChatMessage._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            SELECT l.id FROM {table} l
             WHERE EXISTS (SELECT 1 FROM {messages} m WHERE m.lane_id = l.id AND m.status = %s
                                                        AND m.scheduled_at < now() - make_interval(secs => %s))
               AND NOT EXISTS (SELECT 1 FROM procrastinate_jobs j
                                WHERE j.lock = 'lane:' || l.id AND j.status IN ('todo', 'doing'))
            """,
            [MessageStatus.QUEUED, older_than_seconds],
        )
        lane_ids = [row[0] for row in cursor.fetchall()]
    restarted = 0
    for lane_id in lane_ids:
        with transaction.atomic():
            if _hand_over_lane(lane_id, after=timezone.now(), spacing=0, unless_running=True) is not None:
                restarted += 1
    if restarted:
        logger.warning("Relay: restarted %d lane(s) whose queued messages had no send job", restarted)
    return restarted


def relay_parts(*, conversation, parts: list[str], role: str, sent_by=None, turn_id: str = "", now=None) -> list[ChatMessage]:
    """Store and queue each part (split to the channel's limit) in order, in one transaction."""
    limit = CHANNEL_LIMITS.get(conversation.channel_source, 1000)
    messages = []
    with tenant_scope(conversation.tenant_id), transaction.atomic():
        for part in parts:
            for chunk in split_text(part, limit):
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


def _backoff_seconds(attempt: int, retry_after: float | None) -> float:
    base = settings.RELAY_RETRY_BASE_SECONDS * (2 ** (attempt - 1))
    delay = min(base, settings.RELAY_RETRY_MAX_SECONDS)
    delay = delay * random.uniform(0.5, 1.0)  # jitter: retries of many messages do not stampede
    return max(delay, retry_after or 0)


def _keep_spacing(lane: DeliveryLane | None, spacing: float, slot: datetime | None = None) -> None:
    """Sleep briefly (or reschedule) until the message's slot and ≥ spacing after the lane's
    previous real send (jobs are scheduled a polling interval early, see _job_time)."""
    candidates = [slot] if slot else []
    if lane is not None and lane.last_sent_at and spacing > 0:
        candidates.append(lane.last_sent_at + timedelta(seconds=spacing))
    if not candidates:
        return
    earliest = max(candidates)
    wait = (earliest - timezone.now()).total_seconds()
    if wait > MAX_INLINE_WAIT_SECONDS:
        raise RetryDelivery(earliest, f"lane busy until {earliest.isoformat()}")
    if wait > 0:
        time.sleep(wait)


_LOAD_SQL: str | None = None
_LOAD_MODELS = (ChatMessage, ChatConversation, ChannelBinding, DeliveryLane)


def _load_for_send(tenant_id: int, message_id: int) -> ChatMessage | None:
    """The message with its conversation, binding and lane in one query whose SQL is built once
    per process (the ORM's select_related compiles this join anew on every send: ~1.5 ms)."""
    global _LOAD_SQL
    if _LOAD_SQL is None:
        aliases = ("m", "c", "b", "l")
        columns = ", ".join(f"{alias}.{connection.ops.quote_name(field.column)}"
                            for alias, model in zip(aliases, _LOAD_MODELS) for field in model._meta.concrete_fields)
        _LOAD_SQL = (
            f"SELECT {columns} FROM {ChatMessage._meta.db_table} m "
            f"JOIN {ChatConversation._meta.db_table} c ON c.id = m.conversation_id "
            f"LEFT JOIN {ChannelBinding._meta.db_table} b ON b.id = c.binding_id "
            f"LEFT JOIN {DeliveryLane._meta.db_table} l ON l.id = m.lane_id "
            "WHERE m.id = %s AND m.tenant_id = %s"
        )
    with connection.cursor() as cursor:
        cursor.execute(_LOAD_SQL, [message_id, tenant_id])
        row = cursor.fetchone()
    if row is None:
        return None
    instances, start = [], 0
    for model in _LOAD_MODELS:
        fields = model._meta.concrete_fields
        values = row[start:start + len(fields)]
        start += len(fields)
        instances.append(None if values[0] is None else model.from_db(
            connection.alias, [f.attname for f in fields], [
                f.from_db_value(v, None, connection) if v is not None and hasattr(f, "from_db_value") else v
                for f, v in zip(fields, values)]))
    message, conversation, binding, lane = instances
    conversation.binding = binding
    message.conversation, message.lane = conversation, lane
    return message


def deliver(*, tenant_id: int, message_id: int, lane_id: int | None = None) -> Outcome:
    """The send job's body. Safe to run again: a message that left is never sent twice by us."""
    with tenant_scope(tenant_id):
        message = _load_for_send(tenant_id, message_id)
        if message is None or message.status != MessageStatus.QUEUED:
            # Gone, or already handled (a re-run after a crash): the lane goes on with its next.
            with transaction.atomic():
                _hand_over_lane(lane_id, after=timezone.now(), spacing=0)
            if message is None:
                return Outcome("missing")
            return Outcome("skipped", f"message is {message.status}")
        conversation = message.conversation
        provider = get_provider(message.provider)
        lane = message.lane if message.lane_id else (DeliveryLane.objects.filter(pk=lane_id).first() if lane_id else None)
        spaced = lane is not None and getattr(provider, "spaced", True)
        _keep_spacing(lane, settings.RELAY_SPACING_SECONDS if spaced else 0, message.scheduled_at)
        started = timezone.now()
        # The attempt row is committed before the call: an interrupted try stays visible.
        attempt = _start_attempt(message, started)
        clock = time.monotonic()
        try:
            result = provider.send(message=message, conversation=conversation)
            error = None
        except DeliveryError as exc:
            result, error = None, exc
        except Exception as exc:  # a bug in a provider must not leave the message queued forever
            logger.exception("Provider %s crashed sending message %s", message.provider, message.pk)
            result, error = None, DeliveryError(f"{type(exc).__name__}: {exc}", retryable=False)
        finished = timezone.now()
        duration = int((time.monotonic() - clock) * 1000)
        return _record(message, attempt, lane, result, error, finished, duration,
                       spacing=settings.RELAY_SPACING_SECONDS if getattr(provider, "spaced", True) else 0)


def _record_sent(message, attempt, lane, result, finished, duration, spacing) -> None:
    """A successful send, in one transaction of two statements: (1) the message, its attempt and
    the lane's last send (which locks the lane row); (2) after the lock, the lane's next queued
    message gets its job (or the lane goes idle) and staff screens hear of the status. The second
    statement starts after the lock is held, so it sees any message queued by whoever held it."""
    message.status, message.sent_at, message.error = MessageStatus.SENT, finished, ""
    message.provider_message_id = result.provider_message_id or None
    attempt.outcome, attempt.http_status, attempt.duration_ms = "sent", result.http_status, duration
    lane_id = message.lane_id or (lane.pk if lane else None)
    messages, attempts, lanes = ChatMessage._meta.db_table, DeliveryAttempt._meta.db_table, DeliveryLane._meta.db_table
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            f"""
            WITH a AS (UPDATE {attempts} SET duration_ms = %s, outcome = 'sent', http_status = %s, error = ''
                        WHERE id = %s RETURNING id),
                 l AS (UPDATE {lanes} SET last_sent_at = %s WHERE id = %s RETURNING id)
            UPDATE {messages} SET status = %s, sent_at = %s, error = '', provider_message_id = %s WHERE id = %s
            """,
            [duration, result.http_status, attempt.pk, finished, lane_id, MessageStatus.SENT, finished,
             message.provider_message_id, message.pk],
        )
        status_event = events.message_status_payload(message)
        if lane_id is None:
            cursor.execute(f"SELECT {events.notify_sql()}", [status_event])
            return
        # The lane row is locked by the first statement; the hand-over is the second.
        _hand_over_lane(lane_id, after=finished, spacing=spacing, locked=True, status_event=status_event)


def _start_attempt(message: ChatMessage, started: datetime) -> DeliveryAttempt:
    """Count the attempt on the message and insert its DeliveryAttempt row: one statement."""
    attempt = DeliveryAttempt(tenant_id=message.tenant_id, message_id=message.pk, started_at=started)
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            WITH counted AS (UPDATE {ChatMessage._meta.db_table} SET attempts = attempts + 1 WHERE id = %s
                             RETURNING attempts)
            INSERT INTO {DeliveryAttempt._meta.db_table} (tenant_id, message_id, number, started_at, outcome,
                                                         http_status, duration_ms, error)
            SELECT %s, %s, counted.attempts, %s, '', NULL, NULL, '' FROM counted RETURNING id, number
            """,
            [message.pk, message.tenant_id, message.pk, started],
        )
        attempt.pk, attempt.number = cursor.fetchone()
    attempt._state.adding = False
    message.attempts = attempt.number
    return attempt


def _record(message, attempt, lane, result, error, finished, duration, *, spacing: float = 0) -> Outcome:
    if error is None:
        _record_sent(message, attempt, lane, result, finished, duration, spacing)
        return Outcome(MessageStatus.SENT, "")
    retry_at = None
    with transaction.atomic():
        attempt.duration_ms = duration
        if error is None:
            if lane is not None:  # spacing counts from what actually left (a 500 did not)
                DeliveryLane.objects.filter(pk=lane.pk).update(last_sent_at=finished)
            attempt.outcome, attempt.http_status = "sent", result.http_status
            message.status, message.sent_at, message.error = MessageStatus.SENT, finished, ""
            message.provider_message_id = result.provider_message_id or None
            fields = ["status", "sent_at", "error", "provider_message_id"]
        else:
            attempt.http_status, attempt.error = error.http_status, error.detail
            message.error = error.detail
            fields = ["error"]
            if error.retryable and message.attempts < settings.RELAY_MAX_ATTEMPTS:
                attempt.outcome = "retry"
                retry_at = finished + timedelta(seconds=_backoff_seconds(message.attempts, error.retry_after))
            else:
                attempt.outcome = "failed"
                message.status = MessageStatus.FAILED
                fields.append("status")
        attempt.save(update_fields=["duration_ms", "outcome", "http_status", "error"])
        message.save(update_fields=fields)
        if attempt.outcome != "retry":
            events.message_status(message)
            # Failed for good: the lane's next message gets its job (a retry keeps the lane).
            _hand_over_lane(message.lane_id or (lane.pk if lane else None), after=finished, spacing=0)
    if retry_at is not None:
        logger.warning("Message %s attempt %s failed, retrying at %s: %s", message.pk, attempt.number, retry_at, error.detail)
        raise RetryDelivery(retry_at, error.detail)
    if error is not None:
        logger.error("Message %s failed after %s attempt(s): %s", message.pk, message.attempts, error.detail)
    return Outcome(message.status, message.error)
