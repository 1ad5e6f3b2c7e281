from django.apps import AppConfig


class VaultConfig(AppConfig):
    name = "vault"
    verbose_name = "Credential vault"

    def ready(self):
        from vault import checks  # noqa: F401
        from vault.logging import install_record_factory

        install_record_factory()
