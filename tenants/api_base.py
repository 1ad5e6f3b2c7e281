"""The base of every tenant-facing API view: tenant from the users table, querysets scoped.

Subclasses declare `model` and may narrow the queryset in `scope_queryset()`; they cannot
override `get_queryset()` (the class refuses to be defined), so an endpoint cannot forget the
tenant. An id of another tenant answers 404 "<Model> <id> not found or access denied".
"""

from __future__ import annotations

from rest_framework import exceptions, mixins, serializers, viewsets
from rest_framework.views import APIView

from tenants.resolution import TenantNotAssigned, resolve_tenant
from tenants.scoping import enter_scope, exit_scope


class TenantAPIMixin:
    """Resolves the tenant right after authentication and holds its scope for the request."""

    tenant_id: int | None = None
    _scope_token = None

    def perform_authentication(self, request):
        super().perform_authentication(request)
        user = request.user
        if user is None or not user.is_authenticated:
            return  # the permission check answers 401/403
        try:
            self.tenant_id = resolve_tenant(user.pk)
        except TenantNotAssigned:
            raise exceptions.PermissionDenied(
                "This endpoint needs a user that belongs to a tenant; platform administrators use the admin."
            ) from None
        self._scope_token = enter_scope(self.tenant_id)

    def dispatch(self, request, *args, **kwargs):
        try:
            return super().dispatch(request, *args, **kwargs)
        finally:
            if self._scope_token is not None:
                exit_scope(self._scope_token)
                self._scope_token = None


class TenantAPIView(TenantAPIMixin, APIView):
    """A plain API view in the tenant's scope (for actions that are not a model's CRUD)."""


def not_found(model, pk) -> exceptions.NotFound:
    return exceptions.NotFound(f"{model.__name__} {pk} not found or access denied")


class _TenantScopedGenericViewSet(TenantAPIMixin, viewsets.GenericViewSet):
    model = None

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if "get_queryset" in cls.__dict__ or cls.__dict__.get("queryset") is not None:
            raise TypeError(
                f"{cls.__name__}: tenant viewsets narrow their rows in scope_queryset(), "
                "never by overriding get_queryset() or setting queryset."
            )

    def get_queryset(self):
        if self.model is None:
            raise TypeError(f"{type(self).__name__} must declare `model`.")
        if self.tenant_id is None:  # schema generation and unauthenticated paths
            return self.model.dangerously_unscoped.none()
        return self.scope_queryset(self.model.objects.for_tenant(self.tenant_id))

    def scope_queryset(self, queryset):
        return queryset

    def get_object(self):
        lookup = self.lookup_url_kwarg or self.lookup_field
        pk = self.kwargs.get(lookup)
        try:
            return super().get_object()
        except exceptions.NotFound:
            raise not_found(self.model, pk) from None
        except Exception as exc:
            from django.http import Http404

            if isinstance(exc, Http404):
                raise not_found(self.model, pk) from None
            raise

    def perform_create(self, serializer):
        serializer.save(tenant_id=self.tenant_id)


class TenantScopedViewSet(
    mixins.CreateModelMixin,
    mixins.RetrieveModelMixin,
    mixins.UpdateModelMixin,
    mixins.DestroyModelMixin,
    mixins.ListModelMixin,
    _TenantScopedGenericViewSet,
):
    """Full CRUD over one TenantScopedModel."""


class TenantScopedReadOnlyViewSet(mixins.RetrieveModelMixin, mixins.ListModelMixin, _TenantScopedGenericViewSet):
    """List and detail over one TenantScopedModel."""


class TenantScopedGenericViewSet(_TenantScopedGenericViewSet):
    """Pick your own mixins."""


class TenantPrimaryKeyRelatedField(serializers.PrimaryKeyRelatedField):
    """A related-object field whose choices are the current tenant's rows only.

    Pass the model; the queryset is read at request time through the fail-closed manager, so
    another tenant's id is rejected as "does not exist".
    """

    def __init__(self, model=None, **kwargs):
        self._model = model
        if not kwargs.get("read_only"):
            kwargs.setdefault("queryset", model.objects if model is not None else None)
        super().__init__(**kwargs)
