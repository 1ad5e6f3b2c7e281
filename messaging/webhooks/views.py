"""Webhook endpoints: verify the signature on the raw body, parse, route by binding, store, 200.

No model call and no wait happens here: storing the message and arming the buffer job is all.
Unknown bindings and unexpected shapes answer 200 (providers retry anything else forever), are
logged and counted, and store nothing. Plain Django views (no DRF request/response machinery):
this is the platform's hottest path; errors keep the API's {"detail", "code"} shape.
"""

from __future__ import annotations

import json
import logging

from django.conf import settings
from django.db import connection
from django.db.models import F
from django.http import HttpResponse, JsonResponse
from django.utils.decorators import method_decorator
from django.views import View
from django.views.decorators.csrf import csrf_exempt

from messaging import ingest
from messaging.models import ChannelBinding, Provider, WebhookCounter
from messaging.signatures import SignatureError, verify_chatwoot, verify_meta, verify_ycloud
from messaging.webhooks import chatwoot, meta, ycloud
from messaging.upserts import StaleBinding
from messaging.webhooks.normalized import InboundMessage, UnexpectedShape
from vault.credentials import get_optional_credential

logger = logging.getLogger(__name__)


def count(name: str) -> None:
    if not WebhookCounter.objects.filter(name=name).update(count=F("count") + 1):
        WebhookCounter.objects.get_or_create(name=name, defaults={"count": 1})


def json_reply(data: dict, status: int = 200) -> JsonResponse:
    return JsonResponse(data, status=status)


@method_decorator(csrf_exempt, name="dispatch")
class WebhookView(View):
    """Signature-authenticated, never session-authenticated: no CSRF, no throttling by tenant."""

    provider = ""
    http_method_names = ["get", "post"]

    def dispatch(self, request, *args, **kwargs):
        try:
            return super().dispatch(request, *args, **kwargs)
        except _Reply as exc:
            return json_reply({"detail": exc.detail, "code": exc.code}, status=exc.status)

    def http_method_not_allowed(self, request, *args, **kwargs):
        return json_reply({"detail": f'Method "{request.method}" not allowed.', "code": "method_not_allowed"},
                        status=405)

    def _json(self, request):
        try:
            return json.loads(request.body)
        except (ValueError, UnicodeDecodeError) as exc:
            raise _Reply(400, f"Malformed JSON body: {exc}", "malformed_json") from None

    def _unexpected(self, exc: UnexpectedShape):
        logger.warning("%s webhook: unexpected shape: %s", self.provider, exc)
        count(f"{self.provider}.unexpected_shape")
        return json_reply({"detail": f"Ignored: {exc}", "code": "ignored"}, status=200)

    def _unknown_binding(self, what: str):
        logger.warning("%s webhook: no active channel binding for %s; nothing stored", self.provider, what)
        count(f"{self.provider}.unknown_binding")


class _Reply(Exception):
    def __init__(self, status: int, detail: str, code: str):
        super().__init__(detail)
        self.status, self.detail, self.code = status, detail, code


def _check(verify, **kwargs) -> None:
    try:
        verify(**kwargs)
    except SignatureError as exc:
        raise _Reply(401, str(exc), "bad_signature") from None


class MetaWebhook(WebhookView):
    """One app-level endpoint for WhatsApp Cloud, Messenger and Instagram."""

    provider = Provider.META_DIRECT

    def get(self, request):
        params = request.GET
        token = settings.META_VERIFY_TOKEN
        if params.get("hub.mode") == "subscribe" and token and params.get("hub.verify_token") == token:
            return HttpResponse(params.get("hub.challenge", ""), content_type="text/plain")
        return json_reply({"detail": "Verification token mismatch", "code": "forbidden"}, status=403)

    def post(self, request):
        body = request.body
        _check(verify_meta, app_secret=settings.META_APP_SECRET, header=request.headers.get("X-Hub-Signature-256"),
               body=body)
        try:
            parsed = meta.parse(self._json(request))
        except UnexpectedShape as exc:
            return self._unexpected(exc)
        by_route: dict[str, list] = {}
        for event in parsed:
            by_route.setdefault(event.route_key, []).append(event)
        totals: dict[str, int] = {}
        for route_key, route_events in by_route.items():
            # Customer messages may route by the process's cached binding: their one statement
            # re-checks it in the database (StaleBinding). Statuses and echoes look it up afresh.
            cacheable = all(isinstance(event, InboundMessage) for event in route_events)
            binding = _cached_binding(self.provider, route_key) if cacheable else _active_binding(self.provider, route_key)
            if binding is None:
                self._unknown_binding(f"Meta account {route_key!r}")
                continue
            try:
                counts = ingest.apply_events(binding=binding, parsed=route_events)
            except StaleBinding:
                _BINDING_CACHE.pop((self.provider, route_key), None)
                binding = _active_binding(self.provider, route_key)
                if binding is None:
                    self._unknown_binding(f"Meta account {route_key!r}")
                    continue
                counts = ingest.apply_events(binding=binding, parsed=route_events)
            for key, value in counts.items():
                totals[key] = totals.get(key, 0) + value
        return json_reply({"status": "ok", **totals}, status=200)


_BINDING_FIELDS = ("id", "tenant_id", "agent_id", "channel_source", "external_id")


def _active_binding(provider: str, external_id: str) -> ChannelBinding | None:
    """The active binding for a provider account, in one indexed query (across tenants: the
    account id is what routes a webhook to its tenant)."""
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT {', '.join(_BINDING_FIELDS)} FROM {ChannelBinding._meta.db_table} "
            "WHERE provider = %s AND external_id = %s AND is_active LIMIT 1",
            [provider, external_id],
        )
        row = cursor.fetchone()
    if row is None:
        return None
    return ChannelBinding(provider=provider, is_active=True, **dict(zip(_BINDING_FIELDS, row)))


# (provider, account id) -> binding, for the webhook's hot path; never trusted on its own (see
# messaging.upserts.record_inbound_rows). Bounded: cleared when it grows past the limit.
_BINDING_CACHE: dict[tuple[str, str], ChannelBinding] = {}
BINDING_CACHE_MAX = 10_000


def _cached_binding(provider: str, external_id: str) -> ChannelBinding | None:
    binding = _BINDING_CACHE.get((provider, external_id))
    if binding is None:
        binding = _active_binding(provider, external_id)
        if binding is not None:
            if len(_BINDING_CACHE) >= BINDING_CACHE_MAX:
                _BINDING_CACHE.clear()
            _BINDING_CACHE[(provider, external_id)] = binding
    return binding


class TokenWebhook(WebhookView):
    """Per-tenant endpoints, routed by the binding's webhook token."""

    def binding_for(self, token: str) -> ChannelBinding:
        """The active binding of this token; an unknown token answers 200 (logged and counted)."""
        binding = ChannelBinding.dangerously_unscoped.filter(
            webhook_token=token, provider=self.provider, is_active=True
        ).first()
        if binding is None:
            self._unknown_binding("an unknown webhook token")
            raise _Reply(200, "Ignored: unknown webhook token", "ignored")
        return binding


class ChatwootWebhook(TokenWebhook):
    provider = Provider.CHATWOOT

    def post(self, request, token):
        binding = self.binding_for(token)
        body = request.body
        secret = get_optional_credential(binding.tenant_id, "chatwoot", "WEBHOOK_SECRET")
        if secret:
            _check(verify_chatwoot, secret=secret, signature=request.headers.get("X-Chatwoot-Signature"),
                   timestamp=request.headers.get("X-Chatwoot-Timestamp"), body=body)
        payload = self._json(request)
        try:
            parsed = chatwoot.parse(payload, default_channel=binding.channel_source)
        except UnexpectedShape as exc:
            return self._unexpected(exc)
        delivery = request.headers.get("X-Chatwoot-Delivery", "")
        if parsed and ingest.seen_event(tenant_id=binding.tenant_id, provider=self.provider, event_id=delivery):
            return json_reply({"status": "duplicate"}, status=200)
        wrong = [e for e in parsed if e.route_key and e.route_key != binding.external_id]
        if wrong:
            self._unknown_binding(f"Chatwoot account {wrong[0].route_key!r} on token of account {binding.external_id!r}")
            return json_reply({"detail": "Ignored: account does not match this webhook", "code": "ignored"}, status=200)
        return json_reply({"status": "ok", **ingest.apply_events(binding=binding, parsed=parsed)}, status=200)


class YCloudWebhook(TokenWebhook):
    provider = Provider.YCLOUD

    def post(self, request, token):
        binding = self.binding_for(token)
        body = request.body
        secret = get_optional_credential(binding.tenant_id, "ycloud", "WEBHOOK_SECRET")
        if not secret:
            raise _Reply(401, "YCloud WEBHOOK_SECRET is not configured for this tenant", "bad_signature")
        _check(verify_ycloud, secret=secret, header=request.headers.get("YCloud-Signature"), body=body)
        try:
            event_id, parsed = ycloud.parse(self._json(request))
        except UnexpectedShape as exc:
            return self._unexpected(exc)
        if ingest.seen_event(tenant_id=binding.tenant_id, provider=self.provider, event_id=event_id):
            return json_reply({"status": "duplicate"}, status=200)
        target = self._binding_for_number(binding, parsed)
        return json_reply({"status": "ok", **ingest.apply_events(binding=target, parsed=parsed)}, status=200)

    def _binding_for_number(self, binding, parsed) -> ChannelBinding:
        """One YCloud account may serve several numbers: prefer the tenant's binding for `to`."""
        numbers = {e.route_key for e in parsed if e.route_key and e.route_key != binding.external_id.lstrip("+")}
        if not numbers:
            return binding
        number = numbers.pop()
        return (
            ChannelBinding.objects.for_tenant(binding.tenant_id)
            .filter(provider=self.provider, external_id__in=[number, "+" + number], is_active=True).first()
            or binding
        )
