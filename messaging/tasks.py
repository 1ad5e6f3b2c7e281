"""Background jobs (procrastinate): the inbound buffer, the send job, the handoff e-mail.

Job bodies live in buffer.py, relay.py and handoff.py so tests can call them directly; these
wrappers add the queue, lock and retry policy, and give each job fresh database connections.
"""

from __future__ import annotations

import logging

from django.db import close_old_connections
from procrastinate import BaseRetryStrategy, RetryDecision
from procrastinate.contrib.django import app

from messaging.relay import RetryDelivery

logger = logging.getLogger(__name__)


class RetryWhenAsked(BaseRetryStrategy):
    """Re-run the same job when its body raises RetryDelivery (keeps the job's place in its lock),
    and a few times with backoff on anything unexpected (a database restart mid-job)."""

    unexpected_attempts = 5

    def get_retry_decision(self, *, exception, job):
        if isinstance(exception, RetryDelivery):
            return RetryDecision(retry_at=exception.retry_at)
        if job.attempts < self.unexpected_attempts:
            return RetryDecision(retry_in={"seconds": 2 ** job.attempts})
        return None


def _fresh_connections(func, **kwargs):
    close_old_connections()
    try:
        return func(**kwargs)
    finally:
        close_old_connections()


@app.task(name="messaging.send_message", queue="relay", retry=RetryWhenAsked())
def send_message(*, tenant_id: int, message_id: int, lane_id: int | None = None):
    from messaging.relay import deliver

    return _fresh_connections(deliver, tenant_id=tenant_id, message_id=message_id, lane_id=lane_id).status


@app.periodic(cron="* * * * *", periodic_id="relay-stranded-lanes")
@app.task(name="messaging.recover_stranded_lanes", queue="relay", queueing_lock="relay-stranded-lanes")
def recover_stranded_lanes(timestamp: int | None = None):
    from messaging.relay import recover_stranded_lanes as recover

    return _fresh_connections(recover)


@app.task(name="messaging.answer_conversation", queue="buffer", retry=RetryWhenAsked())
def answer_conversation(*, tenant_id: int, conversation_id: int):
    from messaging.buffer import run_buffer

    return _fresh_connections(run_buffer, tenant_id=tenant_id, conversation_id=conversation_id)


@app.task(name="messaging.send_handoff_email", queue="mail", retry=3)
def send_handoff_email(*, tenant_id: int, conversation_id: int, reason: str = ""):
    from messaging.handoff import email_transcript

    return _fresh_connections(email_transcript, tenant_id=tenant_id, conversation_id=conversation_id, reason=reason)
