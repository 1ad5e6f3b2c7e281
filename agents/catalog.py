"""The models agents may use: provider, temperature support, context window, prices.

Keys (what Agent.model_version stores) are stable; the provider's model ids come from
settings.MODEL_IDS so a new snapshot is a configuration change, not a migration.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal

from django.conf import settings


@dataclass(frozen=True)
class CatalogModel:
    key: str
    provider: str  # "openai" | "google"
    label: str
    accepts_temperature: bool
    context_window: int
    input_price_per_million: Decimal
    output_price_per_million: Decimal
    # Extra constructor arguments the provider needs for this model.
    chat_kwargs: dict = field(default_factory=dict)

    @property
    def model_id(self) -> str:
        return settings.MODEL_IDS.get(self.key, self.key)

    def cost(self, input_tokens: int, output_tokens: int) -> Decimal:
        million = Decimal(1_000_000)
        total = (
            Decimal(input_tokens) * self.input_price_per_million + Decimal(output_tokens) * self.output_price_per_million
        ) / million
        return total.quantize(Decimal("0.000001"))


CATALOG: dict[str, CatalogModel] = {
    m.key: m
    for m in (
        # GPT-5.2 takes a temperature only with reasoning effort "none" (its default).
        CatalogModel("gpt-5.2", "openai", "OpenAI GPT-5.2", True, 400_000, Decimal("1.75"), Decimal("14.00"),
                     chat_kwargs={"reasoning_effort": "none"}),
        CatalogModel("gpt-5-mini", "openai", "OpenAI GPT-5 mini", False, 400_000, Decimal("0.25"), Decimal("2.00")),
        CatalogModel("gemini-3-pro", "google", "Google Gemini 3 Pro", True, 1_048_576, Decimal("2.00"), Decimal("12.00")),
        CatalogModel("gemini-3-flash", "google", "Google Gemini 3 Flash", True, 1_048_576, Decimal("0.50"), Decimal("3.00")),
    )
}

PROVIDER_LABELS = {"openai": "OpenAI", "google": "Google"}


class UnknownModel(ValueError):
    def __init__(self, key: str):
        self.key = key
        super().__init__(f"Unknown model_version '{key}'. Valid: {', '.join(CATALOG)}.")


def get_model(key: str) -> CatalogModel:
    try:
        return CATALOG[key]
    except KeyError:
        raise UnknownModel(key) from None


def models_for_provider(provider: str) -> list[CatalogModel]:
    return [m for m in CATALOG.values() if m.provider == provider]
