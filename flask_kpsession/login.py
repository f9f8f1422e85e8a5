"""The request's side of a session: resolving the token, logging in and out.

These run inside a request and work on one app's :class:`AppState`; the
``KPSession`` methods of the same names are their public face.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from flask import Response, request
from sqlalchemy.exc import SQLAlchemyError

from .addresses import is_valid_address
from .appstate import AppState
from .database import describe
from .errors import (
    DatabaseUnavailableError,
    InvalidAddressError,
    InvalidCredentialsError,
)
from .hook import RequestState, replace_request_state, request_state
from .record import UserSession
from .transport import clear_session_cookie, read_token, set_session_cookie

logger = logging.getLogger(__name__)

PasswordCheck = Callable[[str, str], Any]


def resolve_request(state: AppState) -> RequestState:
    """Validate the current request's token; refresh a live session's clock."""
    token = read_token(request, state.settings)
    if token is None:
        return RequestState()
    if state.csrf.refuses(request):
        return RequestState(csrf_refused=True)
    try:
        found = state.sessions.lookup(
            request.remote_addr or "",
            token,
            refresh_after=state.settings.refresh_throttle,
            cached=True,
        )
    except DatabaseUnavailableError as error:
        logger.warning("session not checked, database unavailable: %s", error)
        return RequestState(token=token, unavailable=True)
    except SQLAlchemyError as error:
        # Not an outage, yet nobody can say whether the session is live: answer
        # as for one (503 where a session is needed), and log the fault without
        # the statement's parameters, which hold the token's hash.
        logger.error(
            "session not checked, database error: %s (statement: %s)",
            describe(error),
            getattr(error, "statement", None),
        )
        return RequestState(token=token, unavailable=True)
    return RequestState(token=token, session=found.session if found.live else None)


def log_in(
    state: AppState, check: PasswordCheck | None, username: str, password: str
) -> UserSession:
    """Check the credentials and start a fresh session for the current request.

    :param check: the host app's password check, or ``None`` for the built-in
        users table.
    """
    addr = request.remote_addr or ""
    if not is_valid_address(addr):
        logger.warning(
            "login refused: client address %r is not an IP address (behind a "
            "proxy, wrap the app in ProxyFix with the right number of hops)",
            addr[:64],
        )
        raise InvalidAddressError("the client address is not an IP address")
    state.throttle.check(username, addr)
    verify = check or state.users.verify
    try:
        matched = bool(verify(username, password))
    except ValueError:
        matched = False
    if not matched:
        logger.info("failed login for %r from %s", username, addr)
        state.throttle.record_failure(username, addr)
        raise InvalidCredentialsError("invalid username or password")

    # A login always issues a new token: the one presented, if any, ends here.
    previous = read_token(request, state.settings)
    if previous:
        state.sessions.remove(addr, previous, reason="logout")
    session = state.sessions.generate(
        addr, username, request.headers.get("User-Agent", "")
    )
    replace_request_state(RequestState(token=session.token, session=session))
    state.throttle.record_success(username, addr)
    logger.info("login of %r from %s", username, addr)
    return session


def log_out(state: AppState) -> bool:
    """End the session the current request presents; tell whether one was deleted.

    A cookie-authenticated request that looks forged ends nothing.
    """
    token = read_token(request, state.settings)
    removed = False
    if token and not request_state().csrf_refused:
        removed = state.sessions.remove(request.remote_addr or "", token)
    replace_request_state(RequestState())
    if removed:
        logger.info("logout from %s", request.remote_addr)
    return removed


def set_cookie(state: AppState, response: Response, session: UserSession) -> None:
    """Put the token of ``session`` (and the CSRF token, if used) in cookies."""
    assert session.token is not None
    set_session_cookie(response, request, state.settings, session.token)
    secure = state.settings.cookie_secure or request.is_secure
    state.csrf.set_cookie(response, secure, state.settings, session.token)


def clear_cookie(state: AppState, response: Response) -> None:
    """Expire the session cookie (and the CSRF cookie) in the browser."""
    clear_session_cookie(response, request, state.settings)
    secure = state.settings.cookie_secure or request.is_secure
    state.csrf.clear_cookie(response, secure, state.settings)
