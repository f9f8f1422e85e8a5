"""JSON answers for requests that reach the prefix but match none of its routes.

Flask raises routing errors (404, 405, a slash redirect) before any blueprint is
chosen, so the blueprint's own error handlers never see them, and an app-wide
handler would take over the host app's pages too. Instead the extension's
``before_request`` hook asks :func:`routing_answer`, which answers only for
paths the extension owns and leaves everything else to the host app.
"""

from __future__ import annotations

from flask import Flask, Request, Response
from werkzeug.exceptions import HTTPException, MethodNotAllowed
from werkzeug.routing import RequestRedirect

from .responses import json_error

#: The blueprint's name, so the endpoints of its routes start with this.
ENDPOINT_PREFIX = "kpsession."


def _under_prefix(path: str, prefix: str) -> bool:
    return path == prefix or path.startswith(prefix + "/")


def _names_one_of_our_routes(app: Flask, request: Request, methods: list[str]) -> bool:
    """Tell whether the path is one of the blueprint's, asked with another method."""
    adapter = app.create_url_adapter(request)
    if adapter is None:
        return False
    for method in methods:
        try:
            rule, _ = adapter.match(method=method, return_rule=True)
        except HTTPException:
            continue
        if rule.endpoint.startswith(ENDPOINT_PREFIX):
            return True
    return False


def owns(app: Flask, request: Request, prefix: str, error: HTTPException) -> bool:
    """Tell whether a routing error belongs to the extension rather than the host.

    With a prefix, every path below it is the extension's. With the empty
    prefix only a wrong method on one of the blueprint's own paths is, so that
    the host app's 404 pages stay its own.
    """
    if prefix:
        return _under_prefix(request.path, prefix)
    if isinstance(error, MethodNotAllowed):
        return _names_one_of_our_routes(app, request, list(error.valid_methods or []))
    return False


def routing_answer(app: Flask, request: Request, prefix: str) -> Response | None:
    """Return the JSON answer to a routing error the extension owns, else ``None``.

    :param prefix: the configured URL prefix (``""`` for the root).
    """
    error = request.routing_exception
    if not isinstance(error, HTTPException) or not owns(app, request, prefix, error):
        return None

    if isinstance(error, RequestRedirect):
        return json_error(
            error.code,
            "moved",
            "This resource is at the address in the Location header.",
            {"Location": error.new_url},
        )
    if isinstance(error, MethodNotAllowed):
        allowed = ", ".join(sorted(error.valid_methods or []))
        return json_error(
            405,
            "method_not_allowed",
            f"This route does not accept {request.method}; use one of: {allowed}.",
            {"Allow": allowed},
        )
    code = (error.name or "error").lower().replace(" ", "_")
    return json_error(error.code or 404, code, "There is no such route here.")
