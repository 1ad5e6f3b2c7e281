"""The "Pointe Coach" demo tenant: a ballet shop with an Argentine-voseo sales advisor."""

DEMO_NAME = "Pointe Coach"
DEMO_SLUG = "pointe-coach"

DEFAULT_AGENT_TONE = (
    "Sos una asesora experta en danza clásica y ballet. Usá voseo argentino. Sé cálida y profesional."
)
SYNONYM_DICTIONARY = {"mallas": "leotardos", "can can": "medias", "zapatillas de punta": "puntas"}


def seed_tenant_content(tenant_id: int) -> None:
    """Agents and other demo content for the tenant (filled in by the agents/templates work)."""
