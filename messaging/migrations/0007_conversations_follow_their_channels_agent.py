import django.db.models.deletion
from django.db import migrations, models

# Until now every conversation copied its channel's agent when it was created, so changing the
# channel's agent left existing customers with the old one. A copy equal to the channel's agent is
# what following the channel means, and a copy of an agent since deactivated (while the channel
# has an agent) only kept those customers unanswered: both are cleared. Other agents set on a
# conversation stay as its override. In batches of 1,000 rows, each its own transaction: a large
# table is not locked as a whole while messages keep arriving, and a rerun continues.
BATCH = """
    UPDATE messaging_chatconversation SET agent_id = NULL
     WHERE id IN (
        SELECT c.id FROM messaging_chatconversation c
          JOIN messaging_channelbinding b ON b.id = c.binding_id
          JOIN agents_agent a ON a.id = c.agent_id
         WHERE c.agent_id = b.agent_id OR (NOT a.is_active AND b.agent_id IS NOT NULL)
         ORDER BY c.id LIMIT 1000)
"""


def follow_the_channel(apps, schema_editor):
    with schema_editor.connection.cursor() as cursor:
        while True:
            cursor.execute(BATCH)
            if cursor.rowcount == 0:
                break


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ('agents', '0001_initial'),
        ('messaging', '0006_conversation_turn_claim_index'),
    ]

    operations = [
        migrations.AlterField(
            model_name='chatconversation',
            name='agent',
            field=models.ForeignKey(blank=True, help_text="Leave empty to follow the channel's agent.", null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='+', to='agents.agent'),
        ),
        migrations.RunPython(follow_the_channel, migrations.RunPython.noop),
    ]
