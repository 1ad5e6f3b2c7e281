import django.db.models.deletion
from django.db import migrations, models

# Until now every conversation copied its channel's agent when it was created, so changing the
# channel's agent left existing customers with the old one. A copy equal to the channel's agent is
# what following the channel means: it is cleared (a conversation set to another agent keeps it).
FOLLOW_THE_CHANNEL = """
    UPDATE messaging_chatconversation c SET agent_id = NULL
      FROM messaging_channelbinding b
     WHERE c.binding_id = b.id AND c.agent_id = b.agent_id
"""


class Migration(migrations.Migration):

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
        migrations.RunSQL(FOLLOW_THE_CHANNEL, migrations.RunSQL.noop),
    ]
