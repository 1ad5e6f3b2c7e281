"""HTTP for the connect flows: admin buttons (install link, OAuth callback), the JSON API,
and the Tienda Nube app webhook. Thin: the work is in tiendanube.py and meta.py."""

from __future__ import annotations

import json
import logging

from django.contrib import messages
from django.core import signing
from django.http import FileResponse, Http404, HttpResponseRedirect, JsonResponse
from django.shortcuts import render
from django.utils.decorators import method_decorator
from django.views import View
from django.views.decorators.csrf import csrf_exempt
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.response import Response

from messaging.integrations import meta, privacy, tiendanube
from messaging.integrations.errors import ConnectError
from agents.models import Agent
from tenants.api_base import TenantAPIView, TenantPrimaryKeyRelatedField

logger = logging.getLogger(__name__)

STATE_MAX_AGE = 15 * 60
STAFF_ONLY = "Sign in as a staff user of the shop to connect it."


def _state_for(request, provider: str) -> str:
    return signing.dumps({"user": str(request.user.pk)}, salt=f"integrations.{provider}.state")


def _state_problem(request, provider: str, *, required: bool) -> str:
    """'' when the OAuth `state` is ours and this user's (or absent and not required)."""
    state = request.GET.get("state")
    if not state:
        return "The authorization came back without its state; start again." if required else ""
    try:
        claims = signing.loads(state, salt=f"integrations.{provider}.state", max_age=STATE_MAX_AGE)
    except signing.BadSignature:
        return "The install link expired or was not made for you; start the install again."
    return "" if claims.get("user") == str(request.user.pk) else "This connection was started by another user."


def _error_response(exc: ConnectError) -> Response:
    return Response({"detail": str(exc), "code": exc.code}, status=exc.status)


def _result_page(request, *, title: str, error: str = "", status: int = 200, result: dict | None = None,
                 template: str = "integrations/connect_result.html", restart: str = "tiendanube-install"):
    from django.contrib import admin

    return render(request, template, {
        **admin.site.each_context(request), "title": title, "error": error, "result": result or {},
        "restart": restart,
    }, status=status)


# --- Tienda Nube ---------------------------------------------------------------------------


def tiendanube_install(request):
    """Admin button: send the staff user to Tienda Nube's authorization page."""
    if request.tenant_id is None:
        return _result_page(request, title="Connect Tienda Nube", status=403, error=STAFF_ONLY)
    try:
        return HttpResponseRedirect(tiendanube.install_url(state=_state_for(request, "tiendanube")))
    except ConnectError as exc:
        return _result_page(request, title="Connect Tienda Nube", error=str(exc), status=exc.status)


def tiendanube_callback(request):
    """Tienda Nube redirects here with ?code=...; the tenant is the signed-in staff user's."""
    title = "Connect Tienda Nube"
    if request.tenant_id is None:
        return _result_page(request, title=title, status=403, error=STAFF_ONLY)
    # Checked when Tienda Nube echoes the state; then it must be ours and this user's.
    problem = _state_problem(request, "tiendanube", required=False)
    if problem:
        return _result_page(request, title=title, status=400, error=problem)
    try:
        result = tiendanube.connect_store(tenant_id=request.tenant_id, code=request.GET.get("code", ""))
    except ConnectError as exc:
        return _result_page(request, title=title, error=str(exc), status=exc.status)
    messages.success(request, f"Tienda Nube store {result['store_id']} connected.")
    return _result_page(request, title=title, result=result)


class CodeInput(serializers.Serializer):
    code = serializers.CharField(max_length=500)


class TiendaNubeConnectAPI(TenantAPIView):
    """POST {"code"}: the same exchange as the admin callback, for API clients."""

    @extend_schema(request=CodeInput, responses=OpenApiTypes.OBJECT)
    def post(self, request):
        data = CodeInput(data=request.data)
        data.is_valid(raise_exception=True)
        try:
            return Response(tiendanube.connect_store(tenant_id=self.tenant_id, code=data.validated_data["code"]))
        except ConnectError as exc:
            return _error_response(exc)


@method_decorator(csrf_exempt, name="dispatch")
class TiendaNubeWebhook(View):
    """App webhooks (app/uninstalled|suspended|resumed) and the privacy webhooks, one endpoint;
    the privacy ones may also be configured as /webhooks/tiendanube/<topic>/."""

    def post(self, request, topic: str | None = None):
        raw = request.body
        try:
            valid = tiendanube.signature_is_valid(raw, request.headers.get("x-linkedstore-hmac-sha256"))
        except ConnectError as exc:
            return JsonResponse({"detail": str(exc), "code": exc.code}, status=exc.status)
        if not valid:
            return JsonResponse({"detail": "Missing or invalid x-linkedstore-hmac-sha256 signature.",
                                 "code": "invalid_signature"}, status=401)
        try:
            payload = json.loads(raw)
        except ValueError as exc:
            return JsonResponse({"detail": f"Body is not valid JSON: {exc}", "code": "invalid_json"}, status=400)
        if not isinstance(payload, dict):
            return JsonResponse({"detail": "Body must be a JSON object.", "code": "invalid_payload"}, status=400)
        return JsonResponse(tiendanube.handle_webhook(payload, topic=topic.strip("/") if topic else None))


# --- Privacy requests (customers/data_request exports) ---------------------------------------


def privacy_exports(request):
    """The shop's data-request exports, for its staff to hand to the customer."""
    title = "Privacy requests"
    if request.tenant_id is None:
        return _result_page(request, title=title, status=403, restart="admin:index",
                            error="Sign in as a staff user of the shop to see its customers' data requests.")
    from django.contrib import admin

    return render(request, "integrations/privacy_exports.html", {
        **admin.site.each_context(request), "title": title, "exports": privacy.list_exports(request.tenant_id),
    })


def privacy_export_download(request, name: str):
    """One export of the signed-in staff user's shop; any other name (another shop's) is a 404."""
    if request.tenant_id is None:
        raise Http404("No such export.")
    try:
        handle = privacy.open_export(request.tenant_id, name)
    except LookupError:
        raise Http404("No such export.") from None
    logger.info("Data request export %s of tenant %s downloaded by user %s", name, request.tenant_id, request.user.pk)
    return FileResponse(handle, as_attachment=True, filename=name, content_type="application/json")


# --- Meta ----------------------------------------------------------------------------------


def meta_start(request):
    """Admin button: Meta's login dialog, coming back to meta_callback."""
    if request.tenant_id is None:
        return _result_page(request, title="Connect Meta", status=403, error=STAFF_ONLY, restart="meta-start")
    try:
        url = meta.dialog_url(redirect_uri=_meta_redirect_uri(), state=_state_for(request, "meta"))
    except ConnectError as exc:
        return _result_page(request, title="Connect Meta", error=str(exc), status=exc.status, restart="meta-start")
    return HttpResponseRedirect(url)


def _meta_redirect_uri() -> str:
    from django.conf import settings
    from django.urls import reverse

    return settings.PUBLIC_BASE_URL + reverse("meta-callback")


def meta_callback(request):
    """Meta redirects here with ?code=&state=; every page the user granted is connected."""
    title = "Connect Meta"
    if request.tenant_id is None:
        return _result_page(request, title=title, status=403, error=STAFF_ONLY, restart="meta-start")
    if request.GET.get("error"):
        return _result_page(request, title=title, status=400, restart="meta-start",
                            error=f"Meta: {request.GET.get('error_description') or request.GET['error']}")
    problem = _state_problem(request, "meta", required=True)
    if problem:
        return _result_page(request, title=title, status=400, error=problem, restart="meta-start")
    try:
        result = meta.connect(tenant_id=request.tenant_id, code=request.GET.get("code", ""),
                              redirect_uri=_meta_redirect_uri())
    except ConnectError as exc:
        return _result_page(request, title=title, error=str(exc), status=exc.status, restart="meta-start")
    return _result_page(request, title=title, result=result, template="integrations/meta_result.html",
                        restart="meta-start")


class MetaConnectInput(serializers.Serializer):
    code = serializers.CharField(max_length=2000)
    redirect_uri = serializers.URLField(max_length=2000)
    page_ids = serializers.ListField(child=serializers.CharField(max_length=64), required=False, allow_empty=True)
    # The tenant's own agents only: another tenant's id is rejected as "does not exist".
    agent = TenantPrimaryKeyRelatedField(model=Agent, required=False, allow_null=True)


class MetaConnectAPI(TenantAPIView):
    """POST {"code", "redirect_uri", "page_ids"?, "agent"?}: the diplomat, end to end."""

    @extend_schema(request=MetaConnectInput, responses=OpenApiTypes.OBJECT)
    def post(self, request):
        data = MetaConnectInput(data=request.data)
        data.is_valid(raise_exception=True)
        try:
            values = dict(data.validated_data)
            values["agent"] = values["agent"].pk if values.get("agent") else None
            result = meta.connect(tenant_id=self.tenant_id, **values)
        except ConnectError as exc:
            return _error_response(exc)
        return Response(result)


class IntegrationsStatusAPI(TenantAPIView):
    """GET: each integration's state, including Meta tokens expiring within 7 days."""

    @extend_schema(responses=OpenApiTypes.OBJECT)
    def get(self, request):
        from messaging.integrations import status

        return Response(status.integration_status(self.tenant_id))
