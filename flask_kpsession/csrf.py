"""Refusing cross-site request forgery of cookie-authenticated requests.

A browser attaches the session cookie to requests that other sites trigger.
``SameSite=Lax`` keeps it off cross-site POSTs, but not off requests from a
sibling subdomain (same site, other origin), nor in every older browser. So an
unsafe request (not GET, HEAD, OPTIONS or TRACE) that is authenticated by the
cookie is refused when the browser says it came from elsewhere:

- ``Sec-Fetch-Site`` (sent by every current browser): anything but
  ``same-origin`` or ``none`` (a user's own navigation) is foreign;
- without it, an ``Origin`` header naming another host than the request's is
  foreign (``Origin: null`` included);
- without either, the client is not a browser (or a very old one) and cannot
  have been driven by another site: nothing to refuse.

Origins listed in ``KPSESSION_CSRF_TRUSTED_ORIGINS`` count as the app's own.
Bearer-authenticated requests are never refused: no browser adds that header
on its own. For stricter deployments ``KPSESSION_CSRF_DOUBLE_SUBMIT`` also asks
cookie-authenticated unsafe requests for an ``X-CSRF-Token`` header equal to a
second, script-readable cookie, whose value is an HMAC of the session token:
another site can neither read it nor forge one by planting a cookie.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
from collections.abc import Iterable
from typing import TYPE_CHECKING, cast
from urllib.parse import urlsplit

from flask import Request, Response, current_app, request

from .config import CsrfSettings, Settings
from .hook import request_state
from .responses import forbidden, private

if TYPE_CHECKING:
    from .extension import KPSession

logger = logging.getLogger(__name__)

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})
#: The header that carries the double-submit token.
HEADER = "X-CSRF-Token"
_LABEL = b"flask-kpsession csrf v1"
_DEFAULT_PORTS = {"http": "80", "https": "443"}
LOGIN_ENDPOINT = "kpsession.login"


def _strip_default_port(netloc: str, scheme: str | None) -> str:
    host, sep, port = netloc.lower().rpartition(":")
    if (
        sep
        and "]" not in port
        and port
        in (
            [_DEFAULT_PORTS[scheme]]
            if scheme in _DEFAULT_PORTS
            else _DEFAULT_PORTS.values()
        )
    ):
        return host
    return netloc.lower()


def _same_host(origin: str, req: Request) -> bool:
    try:
        parts = urlsplit(origin)
    except ValueError:
        return False
    if parts.scheme not in _DEFAULT_PORTS or not parts.netloc:
        return False
    return _strip_default_port(parts.netloc, parts.scheme) == _strip_default_port(
        req.host, None
    )


def has_bearer(req: Request) -> bool:
    """Tell whether the request authenticates with ``Authorization: Bearer``."""
    scheme, _, credential = req.headers.get("Authorization", "").partition(" ")
    return scheme.lower() == "bearer" and bool(credential.strip())


def is_cross_site(req: Request, settings: CsrfSettings) -> bool:
    """Tell whether a browser marks ``req`` as coming from another site or origin."""
    origin = req.headers.get("Origin")
    if origin is not None and origin.lower() in settings.trusted_origins:
        return False
    fetch_site = req.headers.get("Sec-Fetch-Site")
    if fetch_site is not None:
        return fetch_site.strip().lower() not in ("same-origin", "none")
    if origin is None:
        return False
    return not _same_host(origin, req)


class CsrfGuard:
    """Decides on cookie-authenticated unsafe requests; signs double-submit tokens."""

    def __init__(
        self,
        settings: CsrfSettings,
        cookie_name: str,
        secret_keys: Iterable[str | bytes | None],
    ) -> None:
        self.settings = settings
        self._cookie_name = cookie_name
        self.token_cookie_name = f"{cookie_name}_csrf"
        self._keys = [
            hmac.new(
                key.encode() if isinstance(key, str) else key, _LABEL, "sha256"
            ).digest()
            for key in secret_keys
            if key
        ] or [hashlib.sha256(_LABEL).digest()]

    def token_for(self, session_token: str, key_index: int = 0) -> str:
        """Return the double-submit token that goes with ``session_token``."""
        digest = hmac.new(
            self._keys[key_index], session_token.encode("ascii", "replace"), "sha256"
        ).digest()
        return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")

    def refuses(self, req: Request) -> bool:
        """Tell whether ``req`` is a cookie-authenticated unsafe request to refuse."""
        if not self.settings.enabled or req.method in SAFE_METHODS:
            return False
        if has_bearer(req):
            return False
        session_token = req.cookies.get(self._cookie_name)
        if not session_token:
            return False
        if is_cross_site(req, self.settings):
            logger.warning(
                "cross-site %s %s with the session cookie refused (Sec-Fetch-Site=%r, "
                "Origin=%r, from %s)",
                req.method,
                req.path,
                req.headers.get("Sec-Fetch-Site"),
                req.headers.get("Origin"),
                req.remote_addr,
            )
            return True
        if self.settings.double_submit:
            presented = req.headers.get(HEADER, "")
            if not any(
                hmac.compare_digest(presented, self.token_for(session_token, index))
                for index in range(len(self._keys))
            ):
                logger.warning(
                    "%s %s with the session cookie but no valid %s refused (from %s)",
                    req.method,
                    req.path,
                    HEADER,
                    req.remote_addr,
                )
                return True
        return False

    def set_cookie(
        self, response: Response, secure: bool, settings: Settings, session_token: str
    ) -> None:
        """Send the double-submit cookie (readable by scripts) for ``session_token``."""
        if not (self.settings.enabled and self.settings.double_submit):
            return
        response.set_cookie(
            self.token_cookie_name,
            self.token_for(session_token),
            path="/",
            secure=secure,
            httponly=False,
            samesite=settings.cookie_samesite,
        )
        private(response)

    def clear_cookie(
        self, response: Response, secure: bool, settings: Settings
    ) -> None:
        """Expire the double-submit cookie."""
        if not (self.settings.enabled and self.settings.double_submit):
            return
        response.delete_cookie(
            self.token_cookie_name,
            path="/",
            secure=secure,
            httponly=False,
            samesite=settings.cookie_samesite,
        )


def refuse_forgery() -> Response | None:
    """Guard of the blueprint's unsafe routes (``before_request``).

    Refuses what the request hook judged a forgery, and also a browser login
    from another site (login CSRF: it would plant the other site's account in
    the victim's browser), which carries no session cookie to judge. A login
    needs no double-submit token: it is not authenticated by the cookie.
    """
    if request.method in SAFE_METHODS:
        return None
    extension = cast("KPSession", current_app.extensions["kpsession"])
    settings = extension.settings().csrf
    if not settings.enabled:
        return None
    if request.endpoint != LOGIN_ENDPOINT and request_state().csrf_refused:
        return forbidden()
    if not has_bearer(request) and is_cross_site(request, settings):
        logger.warning(
            "cross-site %s %s refused (Sec-Fetch-Site=%r, Origin=%r, from %s)",
            request.method,
            request.path,
            request.headers.get("Sec-Fetch-Site"),
            request.headers.get("Origin"),
            request.remote_addr,
        )
        return forbidden()
    return None
