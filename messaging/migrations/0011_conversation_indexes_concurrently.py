from django.contrib.postgres.operations import AddIndexConcurrently
from django.db import migrations, models

USER_ID_INDEX = models.Index(condition=models.Q(('contact_user_id', ''), _negated=True),
                             fields=['tenant', 'provider', 'channel_source', 'contact_user_id'],
                             name='conversation_user_id_idx')


class Migration(migrations.Migration):
    # Built CONCURRENTLY: conversations keep being written while they build on a large table.
    # conversation_user_id_idx was first added in 0010 inside its transaction; a database that
    # already has it keeps it (IF NOT EXISTS), one that migrates now builds it without locking writes.
    atomic = False

    dependencies = [
        ('messaging', '0010_contact_user_id'),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            database_operations=[migrations.RunSQL(
                'CREATE INDEX CONCURRENTLY IF NOT EXISTS "conversation_user_id_idx" ON "messaging_chatconversation" '
                '("tenant_id", "provider", "channel_source", "contact_user_id") WHERE NOT ("contact_user_id" = \'\')',
                reverse_sql='DROP INDEX CONCURRENTLY IF EXISTS "conversation_user_id_idx"',
            )],
            state_operations=[migrations.AddIndex(model_name='chatconversation', index=USER_ID_INDEX)],
        ),
        AddIndexConcurrently(
            model_name='chatconversation',
            index=models.Index(condition=models.Q(('provider', 'chatwoot')),
                               fields=['tenant', 'external_account_id', 'external_chatwoot_id'],
                               name='conversation_chatwoot_idx'),
        ),
    ]
