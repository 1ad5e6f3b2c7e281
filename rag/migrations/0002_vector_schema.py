"""The pgvector schema, on the `vectors` alias only (rag.routers.VectorRouter reads the hint).

`manage.py migrate --database vectors` applies it; when only `migrate` ran, PgVectorStore
applies the same idempotent SQL on first use (rag.vectorstore.schema).
"""

from django.db import migrations


def create_schema(apps, schema_editor):
    from rag.vectorstore.schema import apply_schema

    apply_schema(schema_editor.connection)


class Migration(migrations.Migration):
    dependencies = [("rag", "0001_documents")]

    operations = [
        migrations.RunPython(create_schema, migrations.RunPython.noop, hints={"target_db": "vectors"}),
    ]
