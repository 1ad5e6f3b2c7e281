from django.apps import AppConfig


class RagConfig(AppConfig):
    name = "rag"
    verbose_name = "Knowledge base"

    def ready(self):
        from platform_ai.views import HEALTH_DETAILS
        from rag import checks, tools  # noqa: F401 - registers the system checks and rag_search
        from rag.selectors import drift_count_cached

        HEALTH_DETAILS["rag_drift"] = drift_count_cached
