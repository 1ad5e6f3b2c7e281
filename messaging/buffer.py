"""The durable inbound buffer: one agent turn per burst of customer messages.

State lives in PostgreSQL (ChatConversation.buffer_due_at, ChatMessage.answered_at,
ChatConversation.turn_claim) and in one procrastinate job per conversation (queueing lock for
"at most one waiting", lock for "one running"). The webhook pushes buffer_due_at forward and makes
sure a job waits; the job, holding the conversation row lock, reschedules itself while the due
time is ahead, otherwise claims the unanswered messages and runs the turn. A crash after the
claim leaves turn_claim set and the next run answers those messages again (never zero times),
with whatever arrived since. A failing job re-arms the conversation itself (retry_later) rather
than through procrastinate's retry (see messaging/tasks.py), and a periodic sweep re-arms any
conversation left with unanswered messages and no job.
"""

from __future__ import annotations

import logging
import random
from datetime import timedelta

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone
from procrastinate.contrib.django.models import ProcrastinateJob
from procrastinate.exceptions import AlreadyEnqueued

from messaging import events
from messaging.history import build_history, message_as_text
from messaging.models import ChatConversation, ChatMessage, ConversationStatus, Direction, Role
from tenants.scoping import tenant_scope

logger = logging.getLogger(__name__)

MESSAGING_WINDOW = timedelta(hours=24)  # WhatsApp, Messenger, Instagram: replies within 24 h of the customer


BUFFER_LOCK_PREFIX = "buffer:"


def buffer_lock(conversation_id: int) -> str:
    return f"{BUFFER_LOCK_PREFIX}{conversation_id}"


def ensure_buffer_job(conversation: ChatConversation, due_at, attempt: int = 0) -> bool:
    """Make sure one buffer job waits for the conversation (look first: deferring into a taken
    queueing lock costs a unique violation and a savepoint rollback, see STACK.md). The webhook's
    inbox's batch write does the same in SQL (messaging.upserts.record_inbound_batch)."""
    from messaging.tasks import answer_conversation

    lock = buffer_lock(conversation.pk)
    if ProcrastinateJob.objects.filter(queueing_lock=lock, status="todo").exists():
        return False
    retry = {"attempt": attempt} if attempt else {}
    try:
        with transaction.atomic():
            answer_conversation.configure(lock=lock, queueing_lock=lock, schedule_at=due_at).defer(
                tenant_id=conversation.tenant_id, conversation_id=conversation.pk, **retry
            )
    except AlreadyEnqueued:  # a concurrent webhook won the race; its job serves this message too
        return False
    return True


def retry_later(*, tenant_id: int, conversation_id: int, attempt: int) -> str:
    """After a failed buffer job (the database went away mid-turn, a bug): run again with backoff
    (2, 4, 8, 16 s, jittered); after BUFFER_MAX_ATTEMPTS the interrupted turn is given up and the
    reason shown on the conversation. A job that already waits (the customer wrote again) does the
    work instead, claim included."""
    with tenant_scope(tenant_id), transaction.atomic():
        conversation = ChatConversation.objects.select_for_update().filter(pk=conversation_id).first()
        if conversation is None:
            return "missing"
        if attempt >= settings.BUFFER_MAX_ATTEMPTS:
            logger.error("Conversation %s: the agent's turn failed %d times; messages %s stay unanswered",
                         conversation.pk, attempt, conversation.turn_claim)
            conversation.turn_claim = []
            # What is still unanswered is given up too, or the sweep would start the same failing
            # turn again every minute.
            ChatMessage.objects.filter(conversation=conversation, direction=Direction.IN, role=Role.CUSTOMER,
                                       answered_at__isnull=True).update(answered_at=timezone.now())
            conversation.last_error = (f"The agent's turn failed {attempt} times in a row (see the worker's log); "
                                       "the bot answers again when the customer writes.")
            conversation.save(update_fields=["turn_claim", "last_error", "updated_at"])
            events.conversation_updated(conversation)
            return "gave up"
        delay = 2 ** attempt * random.uniform(0.8, 1.2)
        queued = ensure_buffer_job(conversation, database_now() + timedelta(seconds=delay), attempt=attempt)
        return f"retry {attempt} in {delay:.1f}s" if queued else "a waiting job takes over"


def rearm_stranded_conversations(*, older_than_seconds: float = 60) -> int:
    """Conversations with customer messages nobody answered, or an interrupted turn, and no buffer
    job waiting or running (a job that failed while the database was down, a restored backup) get
    a job again: the periodic safety net under the buffer, as recover_stranded_lanes is the relay's."""
    conversations, messages = ChatConversation._meta.db_table, ChatMessage._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            WITH candidates AS (
                SELECT conversation_id AS id FROM {messages}
                 WHERE direction = %(inbound)s AND answered_at IS NULL AND role = %(customer)s
                   AND created_at < statement_timestamp() - make_interval(secs => %(older)s)
                UNION
                SELECT id FROM {conversations}  -- conversation_turn_claim_idx
                 WHERE NOT (turn_claim = '[]'::jsonb) AND updated_at < statement_timestamp() - make_interval(secs => %(older)s)
            )
            SELECT c.id, c.tenant_id FROM candidates JOIN {conversations} c USING (id)
             WHERE NOT EXISTS (SELECT 1 FROM procrastinate_jobs j
                                WHERE j.queueing_lock = %(prefix)s || c.id AND j.status = 'todo')
               AND NOT EXISTS (SELECT 1 FROM procrastinate_jobs j
                                WHERE j.lock = %(prefix)s || c.id AND j.status = 'doing')
            """,
            {"inbound": Direction.IN, "customer": Role.CUSTOMER, "older": older_than_seconds,
             "prefix": BUFFER_LOCK_PREFIX},
        )
        stranded = cursor.fetchall()
    now = database_now()
    rearmed = 0
    for conversation_id, tenant_id in stranded:
        with tenant_scope(tenant_id):
            conversation = ChatConversation.objects.filter(pk=conversation_id).first()
            if conversation is not None and ensure_buffer_job(conversation, now):
                rearmed += 1
    if rearmed:
        logger.warning("Buffer: %d conversation(s) had unanswered messages but no job; they have one again", rearmed)
    return rearmed


def held_by_staff(conversation: ChatConversation, now) -> str:
    """Why staff keep the bot out of this conversation ("" when they do not): asked before a turn,
    and again before its reply goes out (a person may have taken over meanwhile)."""
    if conversation.status == ConversationStatus.HUMAN:
        return "Conversation is in human mode; the bot does not answer."
    if conversation.status == ConversationStatus.CLOSED:
        return "Conversation is closed; the bot does not answer."
    if conversation.bot_paused_until and conversation.bot_paused_until > now:
        return f"Bot paused until {conversation.bot_paused_until:%Y-%m-%d %H:%M} UTC."
    return ""


def skip_reason(conversation: ChatConversation, now) -> str:
    """Why the bot must not answer now ("" when it may)."""
    from agents.models import Agent

    held = held_by_staff(conversation, now)
    if held:
        return held
    agent_id = conversation.agent_id or (conversation.binding.agent_id if conversation.binding_id else None)
    if agent_id is None:
        return "No agent is assigned to this channel."
    agent = Agent.objects.for_tenant(conversation.tenant_id).filter(pk=agent_id).values("is_active").first()
    if agent is None:
        return f"Agent {agent_id} no longer exists."
    if not agent["is_active"]:
        return f"Agent {agent_id} is inactive."
    if conversation.last_inbound_at is None or now - conversation.last_inbound_at > MESSAGING_WINDOW:
        # Messenger and Instagram have the same 24-hour standard messaging window as WhatsApp.
        if conversation.channel_source == "whatsapp":
            return "WhatsApp 24-hour window is closed; only template messages may be sent."
        if conversation.channel_source in ("facebook", "instagram"):
            return (f"{conversation.get_channel_source_display()} 24-hour window is closed; "
                    "only tagged messages may be sent.")
    return ""


def _claim(conversation_id: int, now):
    with transaction.atomic():
        conversation = (
            ChatConversation.objects.select_for_update(of=("self",)).select_related("binding")
            .filter(pk=conversation_id).first()
        )
        if conversation is None:
            return "missing"
        # Messages of a turn that was interrupted (a worker killed mid-turn) are answered again,
        # together with whatever the customer wrote since.
        interrupted = [int(i) for i in conversation.turn_claim or []]
        pending = ChatMessage.objects.filter(
            conversation=conversation, direction=Direction.IN, role=Role.CUSTOMER, answered_at__isnull=True
        )
        new = list(pending.order_by("created_at", "id").values_list("id", flat=True))
        if not new and not interrupted:
            return "nothing to answer"
        if new and conversation.buffer_due_at and conversation.buffer_due_at > now:
            ensure_buffer_job(conversation, conversation.buffer_due_at)
            return "rescheduled"
        reason = skip_reason(conversation, now)
        if new:
            ChatMessage.objects.filter(pk__in=new).update(answered_at=now)
        ids = interrupted + new  # the interrupted ones were marked answered when first claimed
        if reason:
            logger.info("Conversation %s: no turn for %d message(s): %s", conversation.pk, len(ids), reason)
            conversation.turn_claim = []
            conversation.last_error = reason
            conversation.save(update_fields=["turn_claim", "last_error", "updated_at"])
            events.conversation_updated(conversation)
            return f"skipped: {reason}"
        if interrupted:
            logger.warning("Conversation %s: answering messages %s again after an interrupted turn%s",
                           conversation.pk, interrupted, f", with {len(ids) - len(interrupted)} newer" if
                           len(ids) > len(interrupted) else "")
        conversation.turn_claim = ids
        conversation.save(update_fields=["turn_claim", "updated_at"])
        return conversation, ids


def _default_turn_runner(**kwargs):
    from agents.runtime import run_turn

    return run_turn(**kwargs)


def database_now():
    """The database's clock: the job was scheduled by it, so "is the burst over" is asked of it too
    (a worker whose clock runs behind would otherwise reschedule the job again and again)."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT statement_timestamp()")
        return cursor.fetchone()[0]


def run_buffer(*, tenant_id: int, conversation_id: int, clock=database_now, turn_runner=None) -> str:
    """The buffer job's body; `clock` and `turn_runner` are injectable for tests."""
    with tenant_scope(tenant_id):
        claim = _claim(conversation_id, clock())
        if isinstance(claim, str):
            return claim
        conversation, ids = claim
        return _answer(conversation, ids, turn_runner or _default_turn_runner)


def _answer(conversation: ChatConversation, ids: list[int], turn_runner) -> str:
    from messaging.relay import relay_parts

    claimed = list(ChatMessage.objects.filter(pk__in=ids).order_by("created_at", "id"))
    agent_id = conversation.agent_id or conversation.binding.agent_id
    events.turn_typing(conversation.tenant_id, conversation.pk, True)
    try:
        result = turn_runner(
            tenant_id=conversation.tenant_id, agent_id=agent_id,
            history=build_history(conversation, exclude_ids=ids, window=settings.AGENT_HISTORY_WINDOW),
            user_text="\n".join(message_as_text(m) for m in claimed), conversation_id=conversation.pk,
        )
        error, parts = result.error, [p for p in (result.parts or []) if p and p.strip()]
        turn_id = str(result.turn_id or "")
        handed_off = getattr(result, "handoff_reason", None) is not None
    except Exception as exc:  # run_turn promises not to raise; a bug must still not block the buffer
        logger.exception("Agent turn crashed for conversation %s", conversation.pk)
        error, parts, turn_id, handed_off = f"Agent turn failed: {type(exc).__name__}", [], "", False
    finally:
        events.turn_typing(conversation.tenant_id, conversation.pk, False)
    with transaction.atomic():
        locked = ChatConversation.objects.select_for_update().get(pk=conversation.pk)
        if locked.turn_claim != ids:
            return "answered elsewhere"
        # A person may have taken over while the model was answering (a staff reply, a Chatwoot
        # agent, the pause button): the bot's reply is then not sent. The turn's own hand-off
        # (which pauses the bot too) still sends its goodbye.
        taken_over = "" if handed_off else held_by_staff(locked, timezone.now())
        if taken_over:
            logger.info("Conversation %s: the agent's reply (%d part(s)) was not sent: %s",
                        conversation.pk, len(parts), taken_over)
            error, parts = f"The agent's reply was not sent (staff took over while it was written): {taken_over}", []
        replies = relay_parts(conversation=locked, parts=parts, role=Role.AGENT, turn_id=turn_id) if parts else []
        locked.turn_claim = []
        locked.last_error = (error or "")[:500]
        locked.save(update_fields=["turn_claim", "last_error", "updated_at"])
        events.conversation_updated(locked)
    if taken_over:
        return f"not sent: {taken_over}"
    if error:
        logger.warning("Conversation %s: agent turn returned an error: %s", conversation.pk, error)
        return f"error: {error}"
    _feed_shadow_rag(locked, agent_id, claimed + replies)
    return f"answered {len(ids)} message(s) with {len(parts)} part(s)"


def _feed_shadow_rag(conversation, agent_id, messages) -> None:
    """Answered turns feed the knowledge base's Shadow RAG (agents that opted in), when the rag
    app offers it (messaging -> rag is an allowed import; rag never imports messaging)."""
    try:
        from rag.services import index_conversation_messages
    except ImportError:
        return
    from agents.models import Agent

    if not Agent.objects.for_tenant(conversation.tenant_id).filter(pk=agent_id, shadow_rag_enabled=True).exists():
        return
    try:
        index_conversation_messages(tenant_id=conversation.tenant_id, agent_id=agent_id, messages=[
            {"id": m.pk, "conversation_id": conversation.pk, "role": m.role, "text": m.text,
             "created_at": m.created_at.isoformat()}
            for m in messages
        ])
    except Exception:
        logger.warning("Shadow RAG indexing failed for conversation %s", conversation.pk, exc_info=True)


def due_time(now=None, seconds: float | None = None):
    return (now or timezone.now()) + timedelta(
        seconds=settings.MESSAGE_BUFFER_SECONDS if seconds is None else seconds
    )
