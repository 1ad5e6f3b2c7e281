from django.db import migrations, models

TABLE = 'messaging_chatconversation'
INDEXES = [
    # (index, its CREATE statement's columns and predicate)
    (models.Index(condition=models.Q(('contact_user_id', ''), _negated=True),
                  fields=['tenant', 'provider', 'channel_source', 'contact_user_id'], name='conversation_user_id_idx'),
     '("tenant_id", "provider", "channel_source", "contact_user_id") WHERE NOT ("contact_user_id" = \'\')'),
    (models.Index(condition=models.Q(('provider', 'chatwoot')),
                  fields=['tenant', 'external_account_id', 'external_chatwoot_id'], name='conversation_chatwoot_idx'),
     '("tenant_id", "external_account_id", "external_chatwoot_id") WHERE "provider" = \'chatwoot\''),
]


def build(apps, schema_editor):
    """CREATE INDEX CONCURRENTLY IF NOT EXISTS, after dropping one an interrupted build left invalid
    (IF NOT EXISTS would keep it, unused, for good)."""
    with schema_editor.connection.cursor() as cursor:
        for index, definition in INDEXES:
            cursor.execute("SELECT i.indisvalid FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
                           "WHERE c.relname = %s", [index.name])
            row = cursor.fetchone()
            if row is not None and not row[0]:
                cursor.execute(f'DROP INDEX CONCURRENTLY IF EXISTS "{index.name}"')
            cursor.execute(f'CREATE INDEX CONCURRENTLY IF NOT EXISTS "{index.name}" ON "{TABLE}" {definition}')


def drop(apps, schema_editor):
    with schema_editor.connection.cursor() as cursor:
        for index, _ in INDEXES:
            cursor.execute(f'DROP INDEX CONCURRENTLY IF EXISTS "{index.name}"')


class Migration(migrations.Migration):
    # Built CONCURRENTLY: conversations keep being written while they build on a large table.
    # conversation_user_id_idx was first added in 0010 inside its transaction; a database that
    # already has it keeps it, one that migrates now builds it without locking writes.
    atomic = False

    dependencies = [
        ('messaging', '0010_contact_user_id'),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            database_operations=[migrations.RunPython(build, drop)],
            state_operations=[migrations.AddIndex(model_name='chatconversation', index=index)
                              for index, _ in INDEXES],
        ),
    ]
