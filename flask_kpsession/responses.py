"""The JSON answers of the extension: one error shape, one set of cache headers."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from flask import Response, jsonify

from .clock import isoformat
from .record import UserSession


def json_error(
    status: int,
    code: str,
    message: str,
    headers: Mapping[str, str] | None = None,
) -> Response:
    """Build the one error shape: ``{"error": code, "message": message}``."""
    response = jsonify(error=code, message=message)
    response.status_code = status
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return private(response)


def private(response: Response) -> Response:
    """Mark an answer as personal: never cached, varies with the credentials."""
    response.headers["Cache-Control"] = "no-store"
    response.vary.add("Cookie")
    response.vary.add("Authorization")
    return response


def unauthorized() -> Response:
    """The one generic answer for a missing, unknown or expired session."""
    return json_error(
        401,
        "unauthorized",
        "A valid session is required.",
        {"WWW-Authenticate": 'Bearer realm="kpsession"'},
    )


def forbidden() -> Response:
    """The answer to a request refused as a possible cross-site forgery."""
    return json_error(
        403,
        "csrf_refused",
        "This request was refused as a possible cross-site request forgery.",
    )


def unavailable() -> Response:
    """The answer while the session database cannot be reached."""
    return json_error(
        503,
        "unavailable",
        "The session service is temporarily unavailable; try again shortly.",
        {"Retry-After": "5"},
    )


def session_fields(session: UserSession) -> dict[str, Any]:
    """The public fields of a session for JSON answers (never the token)."""
    return {
        "username": session.uname,
        "created_at": isoformat(session.created_at) if session.created_at else None,
        "last_used_at": (
            isoformat(session.last_used_at) if session.last_used_at else None
        ),
        "expires_at": isoformat(session.expires_at) if session.expires_at else None,
    }


def listing_fields(session: UserSession, *, current: bool) -> dict[str, Any]:
    """The fields of one entry of ``GET /sessions``."""
    times = session_fields(session)
    del times["username"]
    return {
        "id": session.id,
        "addr": session.addr,
        "user_agent": session.user_agent,
        **times,
        "current": current,
    }
