"""The Universal Delivery Relay: every outbound message (agent, staff, API) leaves through here.

relay_message() stores each part as a queued ChatMessage, claims the recipient lane's next free
slot in one SQL statement (so spacing holds across processes and restarts) and schedules the
send job at that slot with a per-lane procrastinate lock (one job per lane at a time, in order).
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
from messaging.models import ChatMessage, DeliveryAttempt, DeliveryLane, Direction, MessageStatus
from messaging.providers import DeliveryError, get_provider
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
    """Atomically take the lane's next free moment (≥ now) and push it `spacing` further."""
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


def queue_message(message: ChatMessage, conversation, *, now: datetime | None = None) -> None:
    """Claim the lane slot and schedule the send job (inside the caller's transaction)."""
    from messaging.tasks import send_message

    now = now or timezone.now()
    provider = get_provider(message.provider)
    spacing = settings.RELAY_SPACING_SECONDS if getattr(provider, "spaced", True) else 0
    lane_id, slot = claim_slot(
        tenant_id=message.tenant_id, provider=message.provider, recipient=conversation.contact_external_id,
        now=now, spacing=spacing,
    )
    message.scheduled_at = slot
    message.save(update_fields=["scheduled_at"])
    send_message.configure(lock=lane_lock(lane_id), schedule_at=slot).defer(
        tenant_id=message.tenant_id, message_id=message.pk, lane_id=lane_id
    )


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


def _keep_spacing(lane: DeliveryLane, spacing: float) -> None:
    """Sleep briefly (or reschedule) so the provider sees ≥ spacing between two sends of a lane."""
    if not lane.last_sent_at or spacing <= 0:
        return
    earliest = lane.last_sent_at + timedelta(seconds=spacing)
    wait = (earliest - timezone.now()).total_seconds()
    if wait > MAX_INLINE_WAIT_SECONDS:
        raise RetryDelivery(earliest, f"lane busy until {earliest.isoformat()}")
    if wait > 0:
        time.sleep(wait)


def deliver(*, tenant_id: int, message_id: int, lane_id: int | None = None) -> Outcome:
    """The send job's body. Safe to run again: a message that left is never sent twice by us."""
    with tenant_scope(tenant_id):
        message = ChatMessage.objects.select_related("conversation__binding").filter(pk=message_id).first()
        if message is None:
            return Outcome("missing")
        if message.status != MessageStatus.QUEUED:
            return Outcome("skipped", f"message is {message.status}")
        conversation = message.conversation
        provider = get_provider(message.provider)
        lane = DeliveryLane.objects.filter(pk=lane_id).first() if lane_id else None
        if lane is not None and getattr(provider, "spaced", True):
            _keep_spacing(lane, settings.RELAY_SPACING_SECONDS)
        started = timezone.now()
        # The attempt row is committed before the call: an interrupted try stays visible.
        with transaction.atomic():
            message.attempts += 1
            message.save(update_fields=["attempts"])
            attempt = DeliveryAttempt.objects.create(message=message, number=message.attempts, started_at=started)
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
        return _record(message, attempt, lane, result, error, finished, duration)


def _record(message, attempt, lane, result, error, finished, duration) -> Outcome:
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
    if retry_at is not None:
        logger.warning("Message %s attempt %s failed, retrying at %s: %s", message.pk, attempt.number, retry_at, error.detail)
        raise RetryDelivery(retry_at, error.detail)
    if error is not None:
        logger.error("Message %s failed after %s attempt(s): %s", message.pk, message.attempts, error.detail)
    return Outcome(message.status, message.error)
