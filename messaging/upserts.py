"""Single-statement writes for the webhook hot path (each round trip to PostgreSQL counts here).

The INSERTs are built from the model's own fields (defaults and auto_now included), so no column
list is written by hand and a new field is picked up by itself.
"""

from __future__ import annotations

import psycopg
from django.db import IntegrityError, connection, models, transaction

from messaging.models import ChannelBinding, ChatConversation, ChatMessage


# Field types whose Python value psycopg adapts as it is (Django's get_db_prep_save only checks
# and returns it); every other field goes through get_db_prep_save (JSON, enums, custom types).
_PLAIN_TYPES = (models.CharField, models.TextField, models.IntegerField, models.BooleanField, models.ForeignKey)
_PLANS: dict = {}


def _plan(model):
    """Per model, once: (column, attname, field or None when the value passes as it is)."""
    plan = _PLANS.get(model)
    if plan is None:
        plan = _PLANS[model] = []
        for field in model._meta.concrete_fields:
            plain = isinstance(field, _PLAIN_TYPES) and type(field).pre_save is models.Field.pre_save
            if isinstance(field, models.DateTimeField) and not (field.auto_now or field.auto_now_add):
                plain = True  # psycopg adapts aware datetimes; None stays NULL
            plan.append((connection.ops.quote_name(field.column), field.attname, field.primary_key,
                         None if plain else field))
    return plan


def _values(instance) -> tuple[list[str], list]:
    columns, params = [], []
    for column, attname, primary_key, field in _plan(type(instance)):
        if primary_key and getattr(instance, attname) is None:
            continue
        columns.append(column)
        if field is None:
            params.append(getattr(instance, attname))
        else:
            params.append(field.get_db_prep_save(field.pre_save(instance, add=True), connection))
    return columns, params


def insert_message_once(message: ChatMessage) -> ChatMessage | None:
    """INSERT ... ON CONFLICT DO NOTHING on the provider id: None for a duplicate delivery."""
    message._assign_tenant_from_scope()
    columns, params = _values(message)
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {ChatMessage._meta.db_table} ({', '.join(columns)}) VALUES ({', '.join(['%s'] * len(params))}) "
            "ON CONFLICT (tenant_id, provider, provider_message_id) WHERE provider_message_id IS NOT NULL DO NOTHING "
            "RETURNING id",
            params,
        )
        row = cursor.fetchone()
    if row is None:
        return None
    message.pk = row[0]
    message._state.adding = False
    return message


# On conflict: keep known values unless the delivery brings new ones; times only move forward.
_CONVERSATION_UPDATE = """
    binding_id = EXCLUDED.binding_id,
    contact_name = COALESCE(NULLIF(EXCLUDED.contact_name, ''), t.contact_name),
    external_chatwoot_id = COALESCE(NULLIF(EXCLUDED.external_chatwoot_id, ''), t.external_chatwoot_id),
    external_account_id = COALESCE(NULLIF(EXCLUDED.external_account_id, ''), t.external_account_id),
    last_inbound_at = GREATEST(t.last_inbound_at, EXCLUDED.last_inbound_at),
    last_message_at = GREATEST(t.last_message_at, EXCLUDED.last_message_at),
    buffer_due_at = COALESCE(EXCLUDED.buffer_due_at, t.buffer_due_at),
    updated_at = EXCLUDED.updated_at
"""


def upsert_conversation_row(conversation: ChatConversation) -> ChatConversation:
    """Insert the conversation or update the existing one; the row stays locked until commit."""
    conversation._assign_tenant_from_scope()
    columns, params = _values(conversation)
    table = ChatConversation._meta.db_table
    sql = (
        f"INSERT INTO {table} AS t ({', '.join(columns)}) VALUES ({', '.join(['%s'] * len(params))}) "
        f"ON CONFLICT (tenant_id, provider, channel_source, contact_external_id) DO UPDATE SET {_CONVERSATION_UPDATE} "
        "RETURNING *"
    )
    return list(ChatConversation.dangerously_unscoped.raw(sql, params))[0]


def defer_job_sql(*, lock: str, queueing_lock: str, args: str, at: str) -> str:
    """SQL deferring one procrastinate job from inside a statement, through procrastinate's own
    function (the one its Python `defer` calls; pinned by requirements.txt): the arguments are SQL
    expressions; the fragment starts with two placeholders, the task's queue and its name."""
    return (
        "procrastinate_defer_jobs_v1(ARRAY[ROW(%s::varchar, %s::varchar, 0, "
        f"{lock}, {queueing_lock}, {args}, {at})::procrastinate_job_to_defer_v1])"
    )


_INBOUND_SQL: dict[tuple, str] = {}


class StaleBinding(Exception):
    """The channel binding the caller routed by is no longer what the database holds (deactivated,
    deleted, moved, re-pointed): nothing was written; look it up again."""


def record_inbound_rows(conversation: ChatConversation, message: ChatMessage, *, job_queue: str, job_task: str,
                        lock_prefix: str, want_job: bool, notify_sql: str, binding):
    """The webhook's whole write in one statement, its own transaction (one round trip):

    - upsert the conversation (its row stays locked until commit, so a buffer job decides after us);
    - insert the message unless its provider id is known (the de-duplication);
    - for a new message that wants a turn, defer the buffer job through procrastinate's own SQL
      function, unless one already waits for the conversation (look first: STACK.md);
    - publish the live events (NOTIFY: delivered on commit, like everything else here);
    - vouch for the binding: the conversation's tenant comes from the binding row itself, as the
      caller saw it (active, same tenant, account and agent), so a webhook routed by a binding
      cached in the process (messaging.webhooks.views) can never write with a stale one: the
      tenant is then NULL, the statement fails whole, and StaleBinding is raised.

    Returns (conversation_id, buffer_due_at, message_id or None for a duplicate). Two webhooks of
    one conversation racing for the job's queueing lock: the loser's statement fails whole (nothing
    written) and is run again, and then sees the winner's job.
    """
    conversation._assign_tenant_from_scope()
    message._assign_tenant_from_scope()
    conversation_columns, conversation_params = _values(conversation)
    message.conversation_id = 0  # replaced by the upserted conversation's id in SQL
    message_columns, message_params = _values(message)
    link = message_columns.index(connection.ops.quote_name("conversation_id"))
    del message_params[link]
    tenant_at = conversation_columns.index(connection.ops.quote_name("tenant_id"))
    conversation_params[tenant_at:tenant_at + 1] = [binding.pk, binding.tenant_id, binding.provider,
                                                    binding.external_id, binding.agent_id]
    key = (tuple(conversation_columns), tuple(message_columns), notify_sql)
    sql = _INBOUND_SQL.get(key)
    if sql is None:
        placeholders = ["%s"] * len(message_columns)
        placeholders[link] = "(SELECT id FROM conv)"
        conversation_placeholders = ["%s"] * len(conversation_columns)
        conversation_placeholders[tenant_at] = (
            f"(SELECT b.tenant_id FROM {ChannelBinding._meta.db_table} b WHERE b.id = %s AND b.tenant_id = %s "
            "AND b.provider = %s AND b.external_id = %s AND b.is_active AND b.agent_id IS NOT DISTINCT FROM %s)"
        )
        sql = _INBOUND_SQL[key] = (
            f"WITH conv AS (INSERT INTO {ChatConversation._meta.db_table} AS t ({', '.join(conversation_columns)}) "
            f"VALUES ({', '.join(conversation_placeholders)}) "
            f"ON CONFLICT (tenant_id, provider, channel_source, contact_external_id) DO UPDATE SET {_CONVERSATION_UPDATE} "
            "RETURNING t.id, t.tenant_id, t.buffer_due_at), "
            f"msg AS (INSERT INTO {ChatMessage._meta.db_table} ({', '.join(message_columns)}) "
            f"VALUES ({', '.join(placeholders)}) "
            "ON CONFLICT (tenant_id, provider, provider_message_id) WHERE provider_message_id IS NOT NULL DO NOTHING "
            "RETURNING id) "
            "SELECT conv.id, conv.buffer_due_at, m.id, "
            "CASE WHEN m.id IS NOT NULL AND %s::boolean AND NOT EXISTS (SELECT 1 FROM procrastinate_jobs j "
            "  WHERE j.queueing_lock = %s::text || conv.id AND j.status = 'todo') "
            "THEN " + defer_job_sql(
                lock="%s::text || conv.id", queueing_lock="%s::text || conv.id",
                args="jsonb_build_object('tenant_id', conv.tenant_id, 'conversation_id', conv.id)",
                at="conv.buffer_due_at") + " END, "
            f"CASE WHEN m.id IS NOT NULL THEN {notify_sql} END "
            "FROM conv LEFT JOIN msg m ON true"
        )
    params = [*conversation_params, *message_params, want_job, lock_prefix, job_queue, job_task, lock_prefix,
              lock_prefix]
    for attempt in range(3):
        try:
            row = _execute_prepared(sql, params)
            break
        except IntegrityError as exc:
            diag = getattr(exc.__cause__, "diag", None)
            if (isinstance(exc.__cause__, psycopg.errors.NotNullViolation) and diag is not None
                    and diag.table_name == ChatConversation._meta.db_table and diag.column_name == "tenant_id"):
                raise StaleBinding(f"binding {binding.pk} changed") from None
            if attempt == 2 or "queueing_lock" not in str(exc):
                raise
    conversation_id, due_at, message_id = row[:3]
    conversation.pk, message.conversation_id = conversation_id, conversation_id
    conversation.buffer_due_at = due_at
    conversation._state.adding = False
    if message_id is not None:
        message.pk = message_id
        message._state.adding = False
    return conversation_id, due_at, message_id


def _execute_prepared(sql: str, params: list):
    """Run one statement as a server-side prepared statement (parsed and planned once per
    connection); inside a caller's transaction it runs in a savepoint, so a retry is possible."""
    if connection.in_atomic_block:
        with transaction.atomic():
            return _fetch_prepared(sql, params)
    return _fetch_prepared(sql, params)


def _fetch_prepared(sql: str, params: list):
    connection.ensure_connection()
    with connection.wrap_database_errors, psycopg.Cursor(connection.connection) as cursor:
        cursor.execute(sql, params, prepare=True)
        return cursor.fetchone()
