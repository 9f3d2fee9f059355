"""Does a containment's scope cover a request? One rule for every decision."""

from __future__ import annotations

from fnmatch import fnmatchcase

_ARM_PREFIX = "/subscriptions/"


def covers(scope: str, *, method: str, path: str, api: str) -> bool:
    """True when `scope` applies to a request.

    Scopes are '*' (everything); an Azure resource id ('/subscriptions/...') or any other API
    id without a leading slash, which covers itself and everything below it (the gateway sends
    the id of the API or operation called); a path glob ('/orders/*'); or a method and a path
    glob ('GET /orders/*').
    """
    if scope == "*":
        return True
    if scope.startswith("/") and not scope.lower().startswith(_ARM_PREFIX):
        return fnmatchcase(path, scope)
    head, _, rest = scope.partition(" ")
    if rest.startswith("/") and head.isalpha() and head.isupper():
        return method.upper() == head and fnmatchcase(path, rest)
    if not api:
        return False
    # Azure resource ids compare case-insensitively.
    scope_l, api_l = scope.lower().rstrip("/"), api.lower().rstrip("/")
    return api_l == scope_l or api_l.startswith(scope_l + "/")
