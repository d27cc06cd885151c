"""The permission table: every authenticated route of the app has its row, roles hold what the design says,
and a route without a row is for owners only."""

from __future__ import annotations

from typing import Any

import pytest

from services.gateway import permissions as p
from services.gateway.routes import ROUTERS
from services.gateway.routing import authenticated

pytestmark = pytest.mark.unit


def _needs_caller(dependant: Any) -> bool:
    return any(d.call is authenticated or _needs_caller(d) for d in dependant.dependencies)


def authenticated_routes() -> set[tuple[str, str]]:
    found = set()
    for router in ROUTERS:
        for route in router.routes:
            if hasattr(route, "dependant") and _needs_caller(route.dependant):
                found.update((method, route.path) for method in route.methods if method != "HEAD")
    return found


def test_every_route_that_changes_something_has_its_permission() -> None:
    routes = authenticated_routes()
    changing = {r for r in routes if r[0] != "GET"}
    assert len(changing) > 30
    missing = sorted(r for r in changing if r not in p.ROUTE_PERMISSIONS)
    assert missing == [], "add these routes to services/gateway/permissions.py ROUTE_PERMISSIONS"


def test_every_read_has_its_permission_too_and_no_row_is_stale() -> None:
    routes = authenticated_routes()
    assert sorted(r for r in routes if r not in p.ROUTE_PERMISSIONS) == []
    assert sorted(r for r in p.ROUTE_PERMISSIONS if r not in routes) == []


def test_the_table_names_only_known_permissions() -> None:
    assert set(p.ROUTE_PERMISSIONS.values()) <= {*p.PERMISSIONS, p.SIGNED_IN}


def test_roles() -> None:
    assert p.permissions_of("viewer") == {"orders.read"}
    assert p.permissions_of("owner") == set(p.PERMISSIONS)
    assert p.permissions_of("staff") == set(p.PERMISSIONS) - {"staff.manage", "apikeys.manage",
                                                              "notifications.manage"}
    assert p.permissions_of("nobody") == frozenset()


def test_who_may_call_what() -> None:
    refund = ("POST", "/api/v1/orders/{ref}/refunds")
    assert [p.allows(role, *refund) for role in ("owner", "staff", "viewer")] == [True, True, False]
    read = ("GET", "/api/v1/orders/{ref}")
    assert all(p.allows(role, *read) for role in ("owner", "staff", "viewer"))
    assert p.allows("viewer", "HEAD", "/api/v1/orders/{ref}")
    template = ("PUT", "/api/v1/notifications/templates/{kind}/{channel}/{language}")
    assert [p.allows(role, *template) for role in ("owner", "staff", "viewer")] == [True, False, False]
    staff = ("POST", "/api/v1/staff")
    assert [p.allows(role, *staff) for role in ("owner", "staff", "viewer")] == [True, False, False]
    session = ("DELETE", "/api/v1/session")
    assert all(p.allows(role, *session) for role in ("owner", "staff", "viewer"))
    assert not p.allows("impostor", *session)


def test_a_route_without_a_row_is_for_owners_only() -> None:
    unknown = ("POST", "/api/v1/something/new")
    assert p.required(*unknown) is None
    assert [p.allows(role, *unknown) for role in ("owner", "staff", "viewer")] == [True, False, False]
