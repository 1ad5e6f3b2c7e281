from django.db import migrations


def write_canary(apps, schema_editor):
    KeyCanary = apps.get_model("vault", "KeyCanary")
    if not KeyCanary.objects.using(schema_editor.connection.alias).exists():
        KeyCanary.objects.using(schema_editor.connection.alias).create(token="platform-ai vault canary")


class Migration(migrations.Migration):
    dependencies = [("vault", "0001_initial")]
    operations = [migrations.RunPython(write_canary, migrations.RunPython.noop)]
