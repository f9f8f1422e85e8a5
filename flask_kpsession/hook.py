"""Per-request session state: the before_request hook and its helpers.

The request's session is resolved at most once per request: by the
before_request hook when it is enabled, else on first use of
:data:`current_session` or :func:`login_required`. The result is kept in the
request's WSGI environ, not in ``g``: ``g`` belongs to the app context, which
Flask reuses for every request dispatched inside one already pushed (tests
under ``app.app_context()``, internal sub-requests), and one request's session
must never answer for the next.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import wraps
from typing import TYPE_CHECKING, Any, TypeVar, cast

from flask import current_app, has_request_context, request
from werkzeug.local import LocalProxy

from .record import UserSession
from .responses import forbidden, unauthorized, unavailable

if TYPE_CHECKING:
    from .extension import KPSession

F = TypeVar("F", bound=Callable[..., Any])

_ENVIRON_KEY = "flask_kpsession.request_state"


@dataclass
class RequestState:
    """What the current request carries.

    :param token: the presented token, as sent (``None`` when there is none).
    :param session: the live session it names, if any.
    :param unavailable: the database could not be asked, so nobody can say.
    :param csrf_refused: an unsafe request authenticated by the cookie that
        looks forged (see :mod:`flask_kpsession.csrf`); it carries no session.
    """

    token: str | None = None
    session: UserSession | None = None
    unavailable: bool = False
    csrf_refused: bool = False


def request_state() -> RequestState:
    """Return the current request's session state, resolving it on first use."""
    state: RequestState | None = request.environ.get(_ENVIRON_KEY)
    if state is None:
        extension = cast("KPSession", current_app.extensions["kpsession"])
        state = extension.resolve_request()
        request.environ[_ENVIRON_KEY] = state
    return state


def replace_request_state(state: RequestState) -> None:
    """Make ``state`` the request's, after a login or logout changed what it is."""
    request.environ[_ENVIRON_KEY] = state


def _current_session() -> UserSession | None:
    if not has_request_context():
        return None
    return request_state().session


#: The live session of the current request: truthy and behaving as the
#: :class:`UserSession` when there is one, falsy otherwise (test its truth;
#: a proxy is never ``None``).
current_session: UserSession = LocalProxy(_current_session)  # type: ignore[assignment]


def login_required(view: F) -> F:
    """Let the view run only for a request with a live session.

    Answers 401 JSON without one, 403 JSON for a cookie-authenticated unsafe
    request that looks forged, and 503 JSON while the session database is
    unreachable: an outage must not look like a logout.
    """

    @wraps(view)
    def guarded(*args: Any, **kwargs: Any) -> Any:
        state = request_state()
        if state.session is not None:
            return current_app.ensure_sync(view)(*args, **kwargs)
        if state.csrf_refused:
            return forbidden()
        if state.unavailable:
            return unavailable()
        return unauthorized()

    return cast(F, guarded)
