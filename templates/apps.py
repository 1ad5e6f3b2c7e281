from django.apps import AppConfig


class TemplatesConfig(AppConfig):
    name = "templates"
    label = "agent_templates"
    verbose_name = "Agent templates"
