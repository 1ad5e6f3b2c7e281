"""A small Tienda Nube REST client (sync and async httpx) and the shapes the model sees.

Tienda Nube authenticates with `Authentication: bearer <token>` (not Authorization) and rejects
requests without a User-Agent naming the app. Product names and URLs are localized objects
({"es": "...", "pt": "..."}); stock lives on variants (null stock = unlimited).
"""

from __future__ import annotations

from dataclasses import dataclass

import httpx
from django.conf import settings

STATUS_MESSAGES = {
    401: "Tienda Nube rejected the store's access token; the store needs to reconnect the app.",
    402: "The Tienda Nube store's API access is suspended (payment required).",
    403: "The app is not allowed to read this from Tienda Nube.",
    404: "Not found in the store.",
    429: "Tienda Nube is limiting requests right now; try again in a moment.",
}


class TiendaNubeError(Exception):
    """A failure the model can pass on to the customer in plain words."""

    def __init__(self, message: str, status: int | None = None, body=None):
        self.status, self.body = status, body
        super().__init__(message)


@dataclass
class TiendaNubeClient:
    store_id: str
    access_token: str
    timeout: float = 10.0

    def _url(self, path: str) -> str:
        return f"{settings.TIENDANUBE_API_BASE.rstrip('/')}/{self.store_id}/{path.lstrip('/')}"

    @property
    def headers(self) -> dict:
        return {
            "Authentication": f"bearer {self.access_token}",
            "User-Agent": settings.TIENDANUBE_USER_AGENT,
            "Content-Type": "application/json",
        }

    def _interpret(self, response: httpx.Response):
        if response.status_code >= 400:
            try:
                body = response.json()
            except ValueError:
                body = None
            message = STATUS_MESSAGES.get(response.status_code) or (
                f"Tienda Nube answered with an error (HTTP {response.status_code})."
            )
            raise TiendaNubeError(message, response.status_code, body)
        return response.json(), response.headers

    def _timeout_error(self) -> TiendaNubeError:
        return TiendaNubeError(f"Tienda Nube did not answer within {self.timeout:g} s.")

    def request(self, method: str, path: str, *, params=None, json=None):
        try:
            with httpx.Client(timeout=self.timeout) as client:
                response = client.request(method, self._url(path), params=params, json=json, headers=self.headers)
        except httpx.TimeoutException:
            raise self._timeout_error() from None
        except httpx.HTTPError as exc:
            raise TiendaNubeError(f"Tienda Nube could not be reached ({type(exc).__name__}).") from None
        return self._interpret(response)

    async def arequest(self, method: str, path: str, *, params=None, json=None):
        try:
            async with httpx.AsyncClient(timeout=self.timeout) as client:
                response = await client.request(method, self._url(path), params=params, json=json, headers=self.headers)
        except httpx.TimeoutException:
            raise self._timeout_error() from None
        except httpx.HTTPError as exc:
            raise TiendaNubeError(f"Tienda Nube could not be reached ({type(exc).__name__}).") from None
        return self._interpret(response)


def localized(value, language: str = "es") -> str:
    """The text in the store language, else the first language present."""
    if isinstance(value, dict):
        return value.get(language) or next((v for v in value.values() if v), "")
    return value or ""


def _stock(variant: dict):
    if variant.get("stock_management") is False or variant.get("stock") is None:
        return "unlimited"
    return variant.get("stock")


def trim_product(product: dict, language: str = "es") -> dict:
    """What the model needs about a product; nothing else leaves the tool."""
    variants = product.get("variants") or []
    first = variants[0] if variants else {}
    stocks = [_stock(v) for v in variants]
    total = "unlimited" if "unlimited" in stocks else sum(s for s in stocks if isinstance(s, int))
    return {
        "id": product.get("id"),
        "name": localized(product.get("name"), language),
        "price": first.get("price"),
        "promotional_price": first.get("promotional_price"),
        "stock": total,
        "url": localized(product.get("canonical_url"), language),
        "variants": [
            {
                "id": v.get("id"),
                "sku": v.get("sku"),
                "options": " / ".join(localized(x, language) for x in v.get("values") or []),
                "price": v.get("price"),
                "promotional_price": v.get("promotional_price"),
                "stock": _stock(v),
            }
            for v in variants
        ],
    }
