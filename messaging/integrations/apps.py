from django.apps import AppConfig


class IntegrationsConfig(AppConfig):
    """Its own app label so procrastinate autodiscovers `messaging.integrations.tasks`."""

    name = "messaging.integrations"
    label = "integrations"
    verbose_name = "Integrations"
