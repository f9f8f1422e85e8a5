"""How the token travels: the ``Authorization`` header or the session cookie.

Never the URL: a token in a query string ends up in logs, history and
``Referer`` headers, so nothing here ever looks at ``request.args``.
"""

from __future__ import annotations

from flask import Request, Response

from .config import Settings
from .responses import private


def read_token(request: Request, settings: Settings) -> str | None:
    """Return the token the request presents, or ``None``.

    A ``Bearer`` credential wins over the cookie; any other ``Authorization``
    scheme belongs to the host app and is ignored. The value is returned as
    sent: shape checks happen before any query, in the store.
    """
    header = request.headers.get("Authorization")
    if header:
        scheme, _, credential = header.partition(" ")
        if scheme.lower() == "bearer":
            return credential.strip() or None
    return request.cookies.get(settings.cookie_name) or None


def _secure(request: Request, settings: Settings) -> bool:
    return settings.cookie_secure or request.is_secure


def set_session_cookie(
    response: Response, request: Request, settings: Settings, token: str
) -> None:
    """Put ``token`` in the session cookie: HttpOnly, SameSite, host-only, Path=/."""
    response.set_cookie(
        settings.cookie_name,
        token,
        path="/",
        secure=_secure(request, settings),
        httponly=True,
        samesite=settings.cookie_samesite,
    )
    private(response)


def clear_session_cookie(
    response: Response, request: Request, settings: Settings
) -> None:
    """Expire the session cookie in the browser, with the attributes it was set with."""
    response.delete_cookie(
        settings.cookie_name,
        path="/",
        secure=_secure(request, settings),
        httponly=True,
        samesite=settings.cookie_samesite,
    )
    private(response)
