"""Single-statement writes for the webhook hot path (each round trip to PostgreSQL counts here).

The INSERTs are built from the model's own fields (defaults and auto_now included), so no column
list is written by hand and a new field is picked up by itself.
"""

from __future__ import annotations

import psycopg
from django.db import IntegrityError, connection, models, transaction

from messaging.models import ChannelBinding, ChatConversation, ChatMessage, ConversationStatus


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


# On conflict: keep known values unless the delivery brings new ones; times only move forward (a
# delivery processed late, after retries, must not bring the buffer's due time back).
_CONVERSATION_UPDATE = """
    binding_id = EXCLUDED.binding_id,
    contact_name = COALESCE(NULLIF(EXCLUDED.contact_name, ''), t.contact_name),
    contact_user_id = COALESCE(NULLIF(EXCLUDED.contact_user_id, ''), t.contact_user_id),
    external_chatwoot_id = COALESCE(NULLIF(EXCLUDED.external_chatwoot_id, ''), t.external_chatwoot_id),
    external_account_id = COALESCE(NULLIF(EXCLUDED.external_account_id, ''), t.external_account_id),
    last_inbound_at = GREATEST(t.last_inbound_at, EXCLUDED.last_inbound_at),
    last_message_at = GREATEST(t.last_message_at, EXCLUDED.last_message_at),
    buffer_due_at = GREATEST(t.buffer_due_at, EXCLUDED.buffer_due_at),
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


class StaleBinding(Exception):
    """The channel binding the caller routed by is no longer what the database holds (deactivated,
    deleted, moved, re-pointed): nothing was written for it; look it up again."""


def _execute(sql: str, params: list):
    """Run one statement through psycopg directly (no Django health-check query before it) and
    return its row; inside a caller's transaction it runs in a savepoint, so a retry is possible.
    (Not a server-side prepared statement: Django turns those off, prepare_threshold=None, so
    that transaction-mode poolers such as Supabase's keep working; the platform keeps it so.)"""
    connection.ensure_connection()
    with connection.wrap_database_errors:
        if connection.in_atomic_block:
            with transaction.atomic(), psycopg.Cursor(connection.connection) as cursor:
                cursor.execute(sql, params)
                return cursor.fetchone()
        with psycopg.Cursor(connection.connection) as cursor:
            cursor.execute(sql, params)
            return cursor.fetchone()


def _array_casts(model, columns: list[str]) -> list[str]:
    """`%s::<type>[]` per column, for passing one array per column to unnest()."""
    types = {connection.ops.quote_name(f.column): f.db_type(connection) for f in model._meta.concrete_fields}
    return [f"%s::{types[column]}[]" for column in columns]


_BATCH_SQL: dict[tuple, str] = {}


def record_inbound_batch(rows: list[tuple[ChatConversation, ChannelBinding, list[ChatMessage]]], *, job_queue: str,
                         job_task: str, lock_prefix: str, notify_sql: str) -> tuple[set[int], int, list[int]]:
    """Many inbound messages of many conversations in one statement (the webhook inbox's batches):
    The webhook inbox's whole write, set-wise. Each conversation key appears once in `rows` (with its
    newest values) and its binding vouches for it the same way: a row whose binding is no longer
    what the database holds writes nothing (its index is missing from the returned set; the caller
    routes it again). Messages insert ON CONFLICT DO NOTHING (the de-duplication, also within the
    batch); only a customer message that was new pushes its conversation's buffer_due_at (a replay
    leaves the wait alone) and defers its buffer job unless one waits;
    every new message publishes its live events. Rows are written in conversation-key order, so
    two batches lock conversations in the same order.

    Returns (indexes of the rows whose binding vouched, messages inserted, the closed conversations
    that got a new customer message)."""
    conversation_columns = message_columns = None
    conversation_arrays: list[list] = []
    message_arrays: list[list] = []
    vouch: list[list] = [[], [], [], [], [], []]  # row index, binding id, tenant, provider, account, agent
    message_rows: list[int] = []
    for index, (conversation, binding, messages) in enumerate(rows):
        conversation.tenant_id = binding.tenant_id
        columns, params = _values(conversation)
        if conversation_columns is None:
            conversation_columns, conversation_arrays = columns, [[] for _ in columns]
        for array, value in zip(conversation_arrays, params):
            array.append(value)
        for column, value in zip(vouch, (index, binding.pk, binding.tenant_id, binding.provider, binding.external_id,
                                         binding.agent_id)):
            column.append(value)
        for message in messages:
            message.tenant_id, message.conversation_id = binding.tenant_id, 0
            columns, params = _values(message)
            if message_columns is None:
                message_columns, message_arrays = columns, [[] for _ in columns]
            for array, value in zip(message_arrays, params):
                array.append(value)
            message_rows.append(index)
    quote = connection.ops.quote_name
    skip_conversation = {quote("tenant_id")}
    skip_message = {quote("tenant_id"), quote("conversation_id")}
    conversation_keep = [i for i, c in enumerate(conversation_columns) if c not in skip_conversation]
    message_keep = [i for i, c in enumerate(message_columns) if c not in skip_message]
    key = (tuple(conversation_columns), tuple(message_columns), notify_sql)
    sql = _BATCH_SQL.get(key)
    if sql is None:
        c_cols = [conversation_columns[i] for i in conversation_keep]
        m_cols = [message_columns[i] for i in message_keep]
        c_casts = _array_casts(ChatConversation, c_cols)
        m_casts = _array_casts(ChatMessage, m_cols)
        c_names = [f"c_{i}" for i in range(len(c_cols))]
        m_names = [f"m_{i}" for i in range(len(m_cols))]
        contact_key = ("provider", "channel_source", "contact_external_id")
        c_at = {quote(name): f"c_in.c_{c_cols.index(quote(name))}" for name in contact_key}
        m_at = {name: f"m_in.m_{m_cols.index(quote(name))}" for name in ("role", "provider", "provider_message_id")}
        # The buffer waits for new customer messages only: a replayed one leaves buffer_due_at as it
        # was (NULL here, and GREATEST ignores NULL), or a provider's retries would keep pushing the
        # answer back. Concurrent batches with the same new message may both push it: the same time.
        due = c_cols.index(quote("buffer_due_at"))
        c_values = [f"CASE WHEN c_in.k IN (SELECT k FROM fresh) THEN c_in.{name} END" if i == due else name
                    for i, name in enumerate(c_names)]
        lock = "%s::text || conv.id"
        sql = _BATCH_SQL[key] = (
            "WITH c_in AS (SELECT * FROM unnest(%s::int[], %s::bigint[], %s::bigint[], %s::varchar[], %s::varchar[], "
            f"%s::bigint[], {', '.join(c_casts)}) AS r(k, b_id, b_tenant, b_provider, b_account, b_agent, "
            f"{', '.join(c_names)})), "
            f"c_ok AS (SELECT c_in.*, b.tenant_id AS tenant FROM c_in JOIN {ChannelBinding._meta.db_table} b "
            "ON b.id = c_in.b_id AND b.tenant_id = c_in.b_tenant AND b.provider = c_in.b_provider "
            "AND b.external_id = c_in.b_account AND b.is_active AND b.agent_id IS NOT DISTINCT FROM c_in.b_agent), "
            f"m_in AS (SELECT * FROM unnest(%s::int[], {', '.join(m_casts)}) WITH ORDINALITY "
            f"AS r(k, {', '.join(m_names)}, ord)), "
            "fresh AS (SELECT DISTINCT m_in.k FROM m_in JOIN c_ok ON c_ok.k = m_in.k "
            f"WHERE {m_at['role']} = %s AND NOT EXISTS (SELECT 1 FROM {ChatMessage._meta.db_table} e "
            f"WHERE e.tenant_id = c_ok.tenant AND e.provider = {m_at['provider']} "
            f"AND e.provider_message_id = {m_at['provider_message_id']})), "
            f"conv AS (INSERT INTO {ChatConversation._meta.db_table} AS t (tenant_id, {', '.join(c_cols)}) "
            f"SELECT tenant, {', '.join(c_values)} FROM c_ok AS c_in "
            f"ORDER BY tenant, {c_at[quote('provider')]}, {c_at[quote('channel_source')]}, "
            f"{c_at[quote('contact_external_id')]} "
            f"ON CONFLICT (tenant_id, provider, channel_source, contact_external_id) DO UPDATE SET {_CONVERSATION_UPDATE} "
            "RETURNING t.id, t.tenant_id, t.provider, t.channel_source, t.contact_external_id, t.buffer_due_at, "
            "t.status), "
            "keyed AS (SELECT c_in.k, conv.id, conv.tenant_id, conv.buffer_due_at FROM c_ok AS c_in JOIN conv "
            f"ON conv.tenant_id = c_in.tenant AND conv.provider = {c_at[quote('provider')]} "
            f"AND conv.channel_source = {c_at[quote('channel_source')]} "
            f"AND conv.contact_external_id = {c_at[quote('contact_external_id')]}), "
            f"msg AS (INSERT INTO {ChatMessage._meta.db_table} (tenant_id, conversation_id, {', '.join(m_cols)}) "
            f"SELECT keyed.tenant_id, keyed.id, {', '.join(m_names)} FROM m_in JOIN keyed ON keyed.k = m_in.k "
            "ORDER BY m_in.ord "
            "ON CONFLICT (tenant_id, provider, provider_message_id) WHERE provider_message_id IS NOT NULL DO NOTHING "
            "RETURNING id, tenant_id, conversation_id, role), "
            "turns AS (SELECT DISTINCT conversation_id FROM msg WHERE role = %s), "
            # CASE: the job is deferred only when none waits (a WHERE clause has no evaluation order).
            "jobs AS (SELECT count(CASE WHEN NOT EXISTS (SELECT 1 FROM procrastinate_jobs j "
            f"  WHERE j.queueing_lock = {lock} AND j.status = 'todo') THEN "
            + defer_job_sql(lock=lock, queueing_lock=lock,
                            args="jsonb_build_object('tenant_id', conv.tenant_id, 'conversation_id', conv.id)",
                            at="conv.buffer_due_at") + " END) AS n "
            "FROM keyed AS conv WHERE conv.id IN (SELECT conversation_id FROM turns)), "
            f"notes AS (SELECT count({notify_sql}) AS n FROM msg) "
            "SELECT (SELECT array_agg(k) FROM c_ok), (SELECT count(*) FROM msg), (SELECT n FROM jobs), "
            "(SELECT n FROM notes), (SELECT array_agg(conv.id) FROM conv JOIN turns ON turns.conversation_id = conv.id "
            f"WHERE conv.status = '{ConversationStatus.CLOSED}')"
        )
    params = [*vouch, *(conversation_arrays[i] for i in conversation_keep), message_rows,
              *(message_arrays[i] for i in message_keep), "customer", "customer", lock_prefix, job_queue, job_task,
              lock_prefix, lock_prefix]
    for attempt in range(3):
        try:
            result = _execute(sql, params)
            vouched, inserted, closed_asked = result[0], result[1], result[4]
            break
        except IntegrityError as exc:  # two workers deferring one conversation's job: run again
            if attempt == 2 or "queueing_lock" not in str(exc):
                raise
    return set(vouched or ()), inserted, list(closed_asked or ())
