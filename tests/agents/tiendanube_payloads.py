"""Tienda Nube API payloads shaped like the public documentation (localized names, variants)."""

STORE_ID = "1234567"
API = "https://api.tiendanube.test/v1"


def variant(id, sku, price, stock, values, promotional_price=None, stock_management=True):
    return {
        "id": id, "product_id": 9001, "sku": sku, "price": price, "promotional_price": promotional_price,
        "compare_at_price": None, "stock_management": stock_management, "stock": stock,
        "weight": "0.20", "width": "0.00", "height": "0.00", "depth": "0.00",
        "values": values, "image_id": None, "created_at": "2026-03-01T10:00:00+0000",
        "updated_at": "2026-11-01T10:00:00+0000",
    }


def product(id=9001, name_es="Leotardo Clásico Negro", variants=None):
    return {
        "id": id,
        "name": {"es": name_es, "pt": "Collant Clássico Preto"},
        "description": {"es": "<p>Leotardo de lycra con espalda cruzada.</p>"},
        "handle": {"es": "leotardo-clasico-negro"},
        "attributes": [{"es": "Talle"}],
        "published": True, "free_shipping": False, "requires_shipping": True,
        "canonical_url": "https://pointecoach.mitiendanube.com/productos/leotardo-clasico-negro/",
        "brand": "Pointe Coach", "tags": "leotardo,ballet",
        "images": [{"id": 1, "src": "https://acdn.mitiendanube.com/stores/001/products/leo.jpg", "position": 1}],
        "categories": [{"id": 55, "name": {"es": "Leotardos"}}],
        "variants": variants if variants is not None else [
            variant(501, "LEO-NEG-S", "25000.00", 4, [{"es": "S"}], promotional_price="21000.00"),
            variant(502, "LEO-NEG-M", "25000.00", 0, [{"es": "M"}], promotional_price="21000.00"),
        ],
        "created_at": "2026-03-01T10:00:00+0000", "updated_at": "2026-11-01T10:00:00+0000",
    }


def pagination_headers(total: int, per_page: int = 5) -> dict:
    base = f"{API}/{STORE_ID}/products"
    return {
        "X-Total-Count": str(total),
        "Link": f'<{base}?page=2&per_page={per_page}>; rel="next", <{base}?page={-(-total // per_page)}&per_page={per_page}>; rel="last"',
    }
