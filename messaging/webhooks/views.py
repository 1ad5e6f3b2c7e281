"""Webhook endpoints: verify the signature on the raw body, check it is JSON, persist it, 200.

No parsing beyond that, no model call and no wait happens here: the delivery is stored raw in the
webhook inbox (messaging.inbox.receive, one INSERT) and the worker parses, routes and stores its
events. Unknown tokens answer 200 (providers retry anything else forever), are logged and counted,
and store nothing. Plain Django views (no DRF request/response machinery): this is the platform's
hottest path; errors keep the API's {"detail", "code"} shape.
"""

from __future__ import annotations

import json

from django.conf import settings
from django.http import HttpResponse, JsonResponse
from django.utils.decorators import method_decorator
from django.views import View
from django.views.decorators.csrf import csrf_exempt

from messaging import inbox
from messaging.models import ChannelBinding, Provider
from messaging.signatures import SignatureError, verify_chatwoot, verify_meta, verify_ycloud
from vault.credentials import get_optional_credential


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

    def _accept(self, request, *, binding_id=None, delivery_id: str = ""):
        """Persist the verified delivery if its body is JSON (400 naming the problem if not)."""
        try:
            body = request.body.decode("utf-8")
            json.loads(body)
        except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
            raise _Reply(400, f"Malformed JSON body: {exc}", "malformed_json") from None
        inbox.receive(provider=self.provider, body=body, binding_id=binding_id, delivery_id=delivery_id)
        return HttpResponse(b'{"status": "accepted"}', content_type="application/json")


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
        _check(verify_meta, app_secret=settings.META_APP_SECRET, header=request.headers.get("X-Hub-Signature-256"),
               body=request.body)
        return self._accept(request)


class TokenWebhook(WebhookView):
    """Per-tenant endpoints, routed by the binding's webhook token."""

    def binding_for(self, token: str) -> ChannelBinding:
        """The active binding of this token; an unknown token answers 200 (logged and counted)."""
        binding = ChannelBinding.dangerously_unscoped.filter(
            webhook_token=token, provider=self.provider, is_active=True
        ).first()
        if binding is None:
            inbox.unknown_binding(self.provider, "an unknown webhook token")
            raise _Reply(200, "Ignored: unknown webhook token", "ignored")
        return binding


class ChatwootWebhook(TokenWebhook):
    provider = Provider.CHATWOOT

    def post(self, request, token):
        binding = self.binding_for(token)
        secret = get_optional_credential(binding.tenant_id, "chatwoot", "WEBHOOK_SECRET")
        if secret:
            _check(verify_chatwoot, secret=secret, signature=request.headers.get("X-Chatwoot-Signature"),
                   timestamp=request.headers.get("X-Chatwoot-Timestamp"), body=request.body)
        return self._accept(request, binding_id=binding.pk, delivery_id=request.headers.get("X-Chatwoot-Delivery", ""))


class YCloudWebhook(TokenWebhook):
    provider = Provider.YCLOUD

    def post(self, request, token):
        binding = self.binding_for(token)
        secret = get_optional_credential(binding.tenant_id, "ycloud", "WEBHOOK_SECRET")
        if not secret:
            raise _Reply(401, "YCloud WEBHOOK_SECRET is not configured for this tenant", "bad_signature")
        _check(verify_ycloud, secret=secret, header=request.headers.get("YCloud-Signature"), body=request.body)
        return self._accept(request, binding_id=binding.pk)
