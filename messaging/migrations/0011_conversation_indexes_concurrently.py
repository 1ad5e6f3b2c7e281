from django.db import migrations, models

INDEXES = [
    models.Index(condition=models.Q(('contact_user_id', ''), _negated=True),
                 fields=['tenant', 'provider', 'channel_source', 'contact_user_id'], name='conversation_user_id_idx'),
    models.Index(condition=models.Q(('provider', 'chatwoot')),
                 fields=['tenant', 'external_account_id', 'external_chatwoot_id'], name='conversation_chatwoot_idx'),
]


def build(apps, schema_editor):
    """Django's own CREATE INDEX CONCURRENTLY, with IF NOT EXISTS, after dropping an index an
    interrupted build left invalid (IF NOT EXISTS would keep it, unused, for good)."""
    model = apps.get_model('messaging', 'ChatConversation')
    with schema_editor.connection.cursor() as cursor:
        for index in INDEXES:
            cursor.execute("SELECT i.indisvalid FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
                           "WHERE c.relname = %s", [index.name])
            row = cursor.fetchone()
            if row is not None and not row[0]:
                cursor.execute(f'DROP INDEX CONCURRENTLY IF EXISTS "{index.name}"')
            sql = str(index.create_sql(model, schema_editor, concurrently=True))
            cursor.execute(sql.replace("CREATE INDEX CONCURRENTLY ", "CREATE INDEX CONCURRENTLY IF NOT EXISTS ", 1))


def drop(apps, schema_editor):
    with schema_editor.connection.cursor() as cursor:
        for index in INDEXES:
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
            state_operations=[migrations.AddIndex(model_name='chatconversation', index=index) for index in INDEXES],
        ),
    ]
