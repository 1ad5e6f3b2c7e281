"""System checks: the knowledge-base settings name things that exist."""

from django.conf import settings
from django.core.checks import Error, register

EMBEDDERS = ("local", "openai", "google", "auto")
BACKENDS = ("pgvector", "supabase")


@register()
def check_rag_settings(app_configs, **kwargs):
    errors = []
    if settings.RAG_EMBEDDER not in EMBEDDERS:
        errors.append(Error(f"RAG_EMBEDDER '{settings.RAG_EMBEDDER}' is unknown; use one of {', '.join(EMBEDDERS)}.",
                            id="rag.E001"))
    if settings.RAG_VECTOR_BACKEND not in BACKENDS:
        errors.append(Error(f"RAG_VECTOR_BACKEND '{settings.RAG_VECTOR_BACKEND}' is unknown; use one of "
                            f"{', '.join(BACKENDS)}.", id="rag.E002"))
    if settings.RAG_VECTOR_BACKEND == "supabase" and not (settings.SUPABASE_URL and settings.SUPABASE_SERVICE_KEY):
        errors.append(Error("RAG_VECTOR_BACKEND=supabase needs SUPABASE_URL and SUPABASE_SERVICE_KEY.", id="rag.E003"))
    if settings.RAG_CHUNK_OVERLAP >= settings.RAG_CHUNK_SIZE:
        errors.append(Error(f"RAG_CHUNK_OVERLAP ({settings.RAG_CHUNK_OVERLAP}) must be smaller than "
                            f"RAG_CHUNK_SIZE ({settings.RAG_CHUNK_SIZE}).", id="rag.E004"))
    return errors
