"""The browser harness itself: chromium reaches daphne, logs in, opens a websocket."""

from __future__ import annotations

import pytest

from tests.browser.conftest import login
from tests.conftest import make_staff, make_tenant

pytestmark = pytest.mark.browser


def test_staff_logs_in_to_the_admin(page):
    make_staff(make_tenant("shop-a"), "alice")
    login(page, "alice", "pw-alice")
    assert page.locator("#user-tools").inner_text().upper().count("ALICE") == 1
