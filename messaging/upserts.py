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
