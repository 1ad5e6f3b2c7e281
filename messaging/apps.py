from django.apps import AppConfig


class MessagingConfig(AppConfig):
    name = "messaging"

    def ready(self):
        from agents.signals import handoff_requested
        from messaging import checks, providers  # noqa: F401  (checks: registers system checks)
        from messaging.handoff import on_handoff_requested
        from messaging.providers import http  # noqa: F401  (registers meta_direct, chatwoot, ycloud, playground)

        handoff_requested.connect(on_handoff_requested, dispatch_uid="messaging.handoff")
