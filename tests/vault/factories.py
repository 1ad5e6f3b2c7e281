from vault.models import Credential


def credential(tenant):
    return Credential.dangerously_unscoped.create(tenant=tenant, category="openai", name="API_KEY", value="sk-test-" + tenant.slug)


ISOLATION_FACTORIES = {Credential: credential}
