"""Background jobs (procrastinate): the inbound buffer, the handoff and privacy e-mails, the relay's sweep.

Job bodies live in buffer.py, relay.py and handoff.py so tests can call them directly; these
wrappers add the queue, lock and retry policy, and give each job fresh database connections.
Sends are not jobs: the relay's dispatchers (messaging/dispatcher.py) run beside the workers.
"""

from __future__ import annotations

import logging

from django.db import close_old_connections
from procrastinate import RetryStrategy
from procrastinate.contrib.django import app

from messaging.handoff import ChatwootUnavailable

logger = logging.getLogger(__name__)


# Re-run a job up to five times with backoff (2, 4, 8, 16, 32 s) when it fails unexpectedly (a database
# restart mid-job): procrastinate's own strategy.
RETRY_WITH_BACKOFF = RetryStrategy(max_attempts=5, exponential_wait=2)


def _fresh_connections(func, **kwargs):
    close_old_connections()
    try:
        return func(**kwargs)
    finally:
        close_old_connections()


@app.periodic(cron="* * * * *", periodic_id="relay-stranded-lanes")
@app.task(name="messaging.recover_stranded_lanes", queue="relay", queueing_lock="relay-stranded-lanes")
def recover_stranded_lanes(timestamp: int | None = None):
    from messaging.relay import recover_stranded_lanes as recover

    return _fresh_connections(recover)


@app.periodic(cron="41 3 * * *", periodic_id="relay-prune-attempts")
@app.task(name="messaging.prune_delivery_attempts", queue="relay", queueing_lock="relay-prune-attempts")
def prune_delivery_attempts(timestamp: int | None = None):
    from messaging.relay import prune_delivery_attempts as prune

    return _fresh_connections(prune)


# No procrastinate retry for the buffer's job: a retry puts the failed job back to "todo", and when
# the customer has written meanwhile another job of the conversation already waits under the same
# queueing lock, so the retry breaks that unique index and leaves the job "doing" for good, holding
# the conversation's lock (procrastinate issues #1446, #1543). The job re-arms the conversation
# itself instead; a waiting job, if any, does the work (the turn's claim is kept in the row).
@app.task(name="messaging.answer_conversation", queue="buffer")
def answer_conversation(*, tenant_id: int, conversation_id: int, attempt: int = 0):
    from messaging.buffer import retry_later, run_buffer

    try:
        return _fresh_connections(run_buffer, tenant_id=tenant_id, conversation_id=conversation_id)
    except Exception:
        logger.exception("Buffer job for conversation %s failed (attempt %d)", conversation_id, attempt + 1)
        # If this fails too (the database is down), the periodic sweep re-arms the conversation.
        return _fresh_connections(retry_later, tenant_id=tenant_id, conversation_id=conversation_id,
                                  attempt=attempt + 1)


@app.periodic(cron="* * * * *", periodic_id="buffer-stranded-conversations")
@app.task(name="messaging.rearm_stranded_conversations", queue="buffer",
          queueing_lock="buffer-stranded-conversations")
def rearm_stranded_conversations(timestamp: int | None = None):
    from messaging.buffer import rearm_stranded_conversations as rearm

    return _fresh_connections(rearm)


@app.task(name="messaging.send_privacy_export", queue="mail", retry=RETRY_WITH_BACKOFF)
def send_privacy_export(*, tenant_id: int, name: str):
    from messaging.integrations.privacy import email_export

    return _fresh_connections(email_export, tenant_id=tenant_id, name=name)


@app.task(name="messaging.send_handoff_email", queue="mail", retry=3)
def send_handoff_email(*, tenant_id: int, conversation_id: int, reason: str = ""):
    from messaging.handoff import email_transcript

    return _fresh_connections(email_transcript, tenant_id=tenant_id, conversation_id=conversation_id, reason=reason)


@app.task(name="messaging.open_in_chatwoot", queue="mail",
          # Waits 2, 4, 8 s ... doubling: twelve tries cover a Chatwoot outage of over two hours.
          retry=RetryStrategy(max_attempts=12, exponential_wait=2, retry_exceptions={ChatwootUnavailable}))
def open_in_chatwoot(*, tenant_id: int, conversation_id: int):
    from messaging.handoff import open_in_chatwoot as open_conversation

    return _fresh_connections(open_conversation, tenant_id=tenant_id, conversation_id=conversation_id)
