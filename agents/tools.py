"""The tools the agents app contributes to the registry (imported in AgentsConfig.ready).

Every factory receives the turn's ToolContext: the tenant's credentials are read here, at build
time, from the vault; the model-visible arguments never include a tenant or store id.
"""

from __future__ import annotations

import logging
from typing import Literal
from urllib.parse import quote

from django.core.exceptions import ValidationError
from django.core.mail import EmailMessage
from django.core.mail.backends.smtp import EmailBackend
from django.core.validators import validate_email
from pydantic import BaseModel, Field

from agents.registry import ToolContext, register_tool
from agents.text import apply_synonyms
from agents.tiendanube import TiendaNubeClient, TiendaNubeError, trim_product
from agents.tool_builders import as_json, dual_tool
from vault.credentials import CredentialNotConfigured, get_category

logger = logging.getLogger(__name__)


# --- Tienda Nube ----------------------------------------------------------------------------
# Each tool's logic is a generator that yields (method, path, kwargs) requests and receives
# (data, headers); one driver runs it with the sync client, one with the async client.

def _drive(flow, client: TiendaNubeClient) -> str:
    try:
        request = next(flow)
        while True:
            method, path, kwargs = request
            try:
                response = client.request(method, path, **kwargs)
            except TiendaNubeError as exc:
                request = flow.throw(exc)
                continue
            request = flow.send(response)
    except StopIteration as stop:
        return stop.value
    except TiendaNubeError as exc:
        return str(exc)


async def _adrive(flow, client: TiendaNubeClient) -> str:
    try:
        request = next(flow)
        while True:
            method, path, kwargs = request
            try:
                response = await client.arequest(method, path, **kwargs)
            except TiendaNubeError as exc:
                request = flow.throw(exc)
                continue
            request = flow.send(response)
    except StopIteration as stop:
        return stop.value
    except TiendaNubeError as exc:
        return str(exc)


def _tiendanube_tool(ctx: ToolContext, config: dict, *, name: str, description: str, args_schema, flow_factory):
    """Bind a Tienda Nube flow to the tenant's store (credentials read now, in the runtime)."""
    try:
        credentials = get_category(ctx.tenant_id, "tiendanube")
        client = TiendaNubeClient(credentials["STORE_ID"], credentials["ACCESS_TOKEN"], float(config.get("timeout", 10)))
    except CredentialNotConfigured as exc:
        client, missing = None, exc.public_message

    def func(**kwargs) -> str:
        return _drive(flow_factory(**kwargs), client) if client else f"{missing}; the store is not connected yet."

    async def coroutine(**kwargs) -> str:
        return await _adrive(flow_factory(**kwargs), client) if client else f"{missing}; the store is not connected yet."

    return dual_tool(name=name, description=description, args_schema=args_schema, func=func, coroutine=coroutine)


class SearchProductsArgs(BaseModel):
    query: str = Field(min_length=1, max_length=200, description="What the customer is looking for.")


@register_tool(
    "search_products",
    description="Search the store's catalogue in Tienda Nube (name, price, promotional price, stock, URL, variants).",
    prompt_injection="Use search_products to find products in the store before recommending or quoting prices.",
    config={"timeout": 10, "per_page": 5, "language": "es"},
)
def build_search_products(ctx: ToolContext, config: dict):
    language, per_page = config.get("language", "es"), int(config.get("per_page", 5))

    def flow(query: str):
        store_query = apply_synonyms(query, ctx.synonyms)
        products, headers = yield ("GET", "products", {"params": {"q": store_query, "per_page": per_page}})
        return as_json({
            "query": store_query,
            "total": int(headers.get("x-total-count") or len(products)),
            "products": [trim_product(p, language) for p in products],
        })

    return _tiendanube_tool(ctx, config, name="search_products", args_schema=SearchProductsArgs, flow_factory=flow,
                            description="Search the store's products by keywords. Returns name, price, "
                                        "promotional price, stock, URL and variants with SKU and stock.")


class CheckStockArgs(BaseModel):
    product_id_or_sku: str = Field(min_length=1, max_length=100, description="A product id or a variant SKU.")


@register_tool(
    "check_stock",
    description="Check the stock of a product (by id) or of a variant (by SKU) in Tienda Nube.",
    prompt_injection="Use check_stock with a product id or SKU before promising availability.",
    config={"timeout": 10, "language": "es"},
)
def build_check_stock(ctx: ToolContext, config: dict):
    language = config.get("language", "es")

    def flow(product_id_or_sku: str):
        ident = product_id_or_sku.strip()
        product = None
        if ident.isdigit():
            try:
                product, _ = yield ("GET", f"products/{ident}", {})
            except TiendaNubeError as exc:
                if exc.status != 404:
                    raise
        if product is None:
            product, _ = yield ("GET", f"products/sku/{quote(ident, safe='')}", {})
        trimmed = trim_product(product, language)
        sku_match = [v for v in trimmed["variants"] if v["sku"] and v["sku"].lower() == ident.lower()]
        if sku_match:
            trimmed["variants"] = sku_match
        return as_json(trimmed)

    return _tiendanube_tool(ctx, config, name="check_stock", args_schema=CheckStockArgs, flow_factory=flow,
                            description="Stock of a product by its id, or of one variant by its SKU.")


class CreateCustomerArgs(BaseModel):
    name: str = Field(min_length=1, max_length=200)
    email: str = Field(min_length=3, max_length=254)
    phone: str = Field(default="", max_length=40)


@register_tool(
    "create_customer",
    description="Register the customer in the store's Tienda Nube customer list.",
    prompt_injection="When a customer shares their name and e-mail and agrees, use create_customer to register them.",
)
def build_create_customer(ctx: ToolContext, config: dict):
    def flow(name: str, email: str, phone: str = ""):
        try:
            validate_email(email)
        except ValidationError:
            return f"'{email}' is not a valid e-mail address; ask the customer to check it."
        body = {"name": name.strip(), "email": email.strip().lower(), "phone": phone.strip() or None}
        try:
            customer, _ = yield ("POST", "customers", {"json": {k: v for k, v in body.items() if v}})
        except TiendaNubeError as exc:
            if exc.status == 422 and "email" in str(exc.body).lower():
                return f"A customer with the e-mail {body['email']} already exists in the store; nothing to do."
            raise
        return as_json({"created": True, "customer_id": customer.get("id"), "email": body["email"]})

    return _tiendanube_tool(ctx, config, name="create_customer", args_schema=CreateCustomerArgs, flow_factory=flow,
                            description="Create a customer (name, e-mail, phone) in the store.")


# --- Records for the turn ---------------------------------------------------------------------

class ReportAssistanceArgs(BaseModel):
    type: Literal["sales", "support"]
    score: float = Field(ge=0, le=1, description="0 = not helped at all, 1 = fully helped.")
    reasoning: str = Field(min_length=1, max_length=2000)


@register_tool(
    "report_assistance",
    description="Record how well the customer was assisted in this conversation (sales or support).",
    prompt_injection="When a conversation reaches an outcome, call report_assistance with a score from 0 to 1.",
)
def build_report_assistance(ctx: ToolContext, config: dict):
    def report(type: str, score: float, reasoning: str) -> str:
        ctx.signals.setdefault("assistance_reports", []).append(
            {"type": type, "score": float(score), "reasoning": reasoning.strip()}
        )
        return "Recorded."

    async def areport(type: str, score: float, reasoning: str) -> str:
        return report(type, score, reasoning)

    return dual_tool(name="report_assistance", description="Record the assistance outcome (type, score 0..1, reasoning).",
                     args_schema=ReportAssistanceArgs, func=report, coroutine=areport)


class HandoffArgs(BaseModel):
    reason: str = Field(min_length=1, max_length=500, description="Why a person should take over.")


@register_tool(
    "handoff_to_human",
    description="Ask a person from the store's team to take over the conversation.",
    prompt_injection="If the customer asks for a person or you cannot help, call handoff_to_human with the reason.",
)
def build_handoff_to_human(ctx: ToolContext, config: dict):
    def handoff(reason: str) -> str:
        ctx.signals["handoff"] = reason.strip()
        return "A teammate has been asked to take over. Tell the customer a person will answer shortly."

    async def ahandoff(reason: str) -> str:
        return handoff(reason)

    return dual_tool(name="handoff_to_human", description="Hand the conversation over to a person, with the reason.",
                     args_schema=HandoffArgs, func=handoff, coroutine=ahandoff)


# --- E-mail ("agent mode") ------------------------------------------------------------------

class SendEmailArgs(BaseModel):
    to: str = Field(min_length=3, max_length=254)
    subject: str = Field(min_length=1, max_length=200)
    body: str = Field(min_length=1, max_length=20000)


@register_tool(
    "send_email",
    description="Send an e-mail from the store's own SMTP account.",
    prompt_injection="Use send_email only when the customer asks to receive something by e-mail.",
    config={"timeout": 15},
)
def build_send_email(ctx: ToolContext, config: dict):
    try:
        smtp = get_category(ctx.tenant_id, "smtp")
    except CredentialNotConfigured as exc:
        smtp, missing = None, exc.public_message
    timeout = float(config.get("timeout", 15))

    def send(to: str, subject: str, body: str) -> str:
        if smtp is None:
            return f"{missing}; e-mail cannot be sent yet."
        try:
            validate_email(to)
        except ValidationError:
            return f"'{to}' is not a valid e-mail address; ask the customer to check it."
        # An explicit alias selects the options-only path: the platform's EMAIL_* settings are
        # never used as a fallback for a tenant's mail.
        backend = EmailBackend(
            alias=f"tenant-{ctx.tenant_id}-smtp", host=smtp["HOST"], port=int(smtp["PORT"]),
            username=smtp.get("USER") or None, password=smtp.get("PASSWORD") or None,
            use_tls=str(smtp.get("USE_TLS", "")).lower() in ("1", "true", "yes"), timeout=timeout,
            fail_silently=False,
        )
        message = EmailMessage(subject=subject, body=body, from_email=smtp["FROM"], to=[to])
        try:
            sent = backend.send_messages([message])
        except Exception as exc:  # smtplib raises OSError subclasses and SMTPException
            logger.warning("send_email failed for tenant %s: %s", ctx.tenant_id, type(exc).__name__)
            return f"The e-mail could not be sent ({type(exc).__name__})."
        return f"E-mail sent to {to}." if sent else "The e-mail was not sent."

    return dual_tool(name="send_email", description="Send an e-mail (to, subject, body) from the store's address.",
                     args_schema=SendEmailArgs, func=send)
