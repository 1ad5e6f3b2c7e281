"""The dashboard (filled in below)."""

from django.shortcuts import render

from messaging.live.views import _context


def dashboard_view(request):
    return render(request, "live/no_tenant.html", _context(request, title="Dashboard"))
