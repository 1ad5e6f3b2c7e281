from django.apps import AppConfig


class AgentsConfig(AppConfig):
    name = "agents"

    def ready(self):
        from agents import checks, tools  # noqa: F401  (registers tools and system checks)
