"""The platform's URLs plus the benchmark's floors: a bare 200, and signature check + one insert."""

import hashlib
import hmac

from django.conf import settings
from django.db import connection
from django.http import HttpResponse
from django.urls import path
from django.views.decorators.csrf import csrf_exempt

from platform_ai.urls import urlpatterns as platform_urlpatterns


def bare(request):
    return HttpResponse(b"ok")


@csrf_exempt
def floor(request):
    body = request.body
    digest = hmac.new(settings.META_APP_SECRET.encode(), body, hashlib.sha256).hexdigest()
    if not hmac.compare_digest("sha256=" + digest, request.headers.get("X-Hub-Signature-256", "")):
        return HttpResponse(status=401)
    with connection.cursor() as cursor:
        cursor.execute("INSERT INTO bench_floor (body) VALUES (%s)", [body.decode()])
    return HttpResponse(b"ok")


urlpatterns = [path("bench/bare", bare), path("bench/floor", floor), *platform_urlpatterns]
