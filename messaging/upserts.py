"""Single-statement writes for the webhook hot path (each round trip to PostgreSQL counts here).

`insert_returning` inserts a model instance with ON CONFLICT handling and RETURNING, built from
the model's own fields (defaults and auto_now included), so no column list is written by hand.
"""

from __future__ import annotations

from django.db import connection

from messaging.models import ChatConversation, ChatMessage


def _values(instance) -> tuple[list[str], list]:
    columns, params = [], []
    for field in instance._meta.concrete_fields:
        if field.primary_key and getattr(instance, field.attname) is None:
            continue
        value = field.pre_save(instance, add=True)
        columns.append(connection.ops.quote_name(field.column))
        params.append(field.get_db_prep_save(value, connection))
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


_INBOUND_SQL: dict[tuple, str] = {}


def record_inbound_rows(conversation: ChatConversation, message: ChatMessage, pending_lock_prefix: str):
    """The webhook's whole write in one statement: upsert the conversation (its row stays locked
    until commit, so a buffer job decides after us), insert the message unless its provider id
    is known, and tell whether a buffer job already waits for the conversation.

    Returns (conversation_id, buffer_due_at, message_id or None for a duplicate, job_waiting).
    """
    conversation._assign_tenant_from_scope()
    message._assign_tenant_from_scope()
    conversation_columns, conversation_params = _values(conversation)
    message.conversation_id = 0  # replaced by the upserted conversation's id in SQL
    message_columns, message_params = _values(message)
    link = message_columns.index(connection.ops.quote_name("conversation_id"))
    del message_params[link]
    key = (tuple(conversation_columns), tuple(message_columns))
    sql = _INBOUND_SQL.get(key)
    if sql is None:
        placeholders = ["%s"] * len(message_columns)
        placeholders[link] = "(SELECT id FROM conv)"
        sql = _INBOUND_SQL[key] = (
            f"WITH conv AS (INSERT INTO {ChatConversation._meta.db_table} AS t ({', '.join(conversation_columns)}) "
            f"VALUES ({', '.join(['%s'] * len(conversation_columns))}) "
            f"ON CONFLICT (tenant_id, provider, channel_source, contact_external_id) DO UPDATE SET {_CONVERSATION_UPDATE} "
            "RETURNING t.id, t.buffer_due_at), "
            f"msg AS (INSERT INTO {ChatMessage._meta.db_table} ({', '.join(message_columns)}) "
            f"VALUES ({', '.join(placeholders)}) "
            "ON CONFLICT (tenant_id, provider, provider_message_id) WHERE provider_message_id IS NOT NULL DO NOTHING "
            "RETURNING id) "
            "SELECT conv.id, conv.buffer_due_at, (SELECT id FROM msg), EXISTS (SELECT 1 FROM procrastinate_jobs j "
            "WHERE j.queueing_lock = %s || conv.id::text AND j.status = 'todo') FROM conv"
        )
    with connection.cursor() as cursor:
        cursor.execute(sql, [*conversation_params, *message_params, pending_lock_prefix])
        conversation_id, due_at, message_id, waiting = cursor.fetchone()
    conversation.pk, message.conversation_id = conversation_id, conversation_id
    conversation.buffer_due_at = due_at
    conversation._state.adding = False
    if message_id is not None:
        message.pk = message_id
        message._state.adding = False
    return conversation_id, due_at, message_id, waiting
