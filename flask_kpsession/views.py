"""The blueprint: ``POST /login``, ``POST /logout`` and ``GET /check``.

Every answer under the blueprint is JSON, private (``Cache-Control: no-store``,
``Vary: Cookie``), and every error has the one shape of :func:`json_error`.
"""

from __future__ import annotations

import json
import logging
from typing import TYPE_CHECKING, cast

from flask import Blueprint, Response, current_app, jsonify, request
from sqlalchemy.exc import SQLAlchemyError
from werkzeug.exceptions import HTTPException

from .csrf import refuse_forgery
from .database import describe
from .errors import (
    DatabaseUnavailableError,
    InvalidAddressError,
    InvalidCredentialsError,
    LoginThrottledError,
)
from .hook import login_required, request_state
from .payloads import BadPayload, read_credentials, read_keep_current
from .responses import (
    json_error,
    listing_fields,
    private,
    session_fields,
    unauthorized,
    unavailable,
)

if TYPE_CHECKING:
    from .extension import KPSession

logger = logging.getLogger(__name__)

blueprint = Blueprint("kpsession", __name__)
blueprint.before_request(refuse_forgery)


def _extension() -> KPSession:
    return cast("KPSession", current_app.extensions["kpsession"])


@blueprint.post("/login")
def login() -> Response:
    """Check the credentials and start a fresh session."""
    extension = _extension()
    credentials = read_credentials(request, extension.settings().max_password_length)
    session = extension.log_in(credentials.username, credentials.password)
    response = jsonify(
        token=session.token,
        username=session.uname,
        expires_at=session_fields(session)["expires_at"],
    )
    extension.set_cookie(response, session)
    return response


@blueprint.post("/logout")
def logout() -> Response:
    """End the presented session, if any, and clear the cookie."""
    extension = _extension()
    removed = extension.log_out()
    response = jsonify(logged_out=removed)
    extension.clear_cookie(response)
    directives = extension.settings().clear_site_data
    if directives:
        response.headers["Clear-Site-Data"] = ", ".join(f'"{d}"' for d in directives)
    return response


@blueprint.get("/check")
def check() -> Response:
    """Describe the presented session, or answer 401."""
    state = request_state()
    if state.session is not None:
        return jsonify(session_fields(state.session))
    if state.unavailable:
        return unavailable()
    return unauthorized()


@blueprint.get("/sessions")
@login_required
def sessions() -> Response:
    """List the live sessions of the requesting user, most recently used first."""
    current = request_state().session
    assert current is not None
    listed = _extension().list_sessions(current.uname)
    return jsonify(
        sessions=[
            listing_fields(item, current=item.id == current.id) for item in listed
        ]
    )


@blueprint.delete("/sessions/<session_id>")
@login_required
def revoke(session_id: str) -> Response:
    """End one of the requesting user's own sessions, by its public id."""
    extension = _extension()
    current = request_state().session
    assert current is not None
    if not extension.revoke_own_session(current.uname, session_id):
        return json_error(404, "not_found", "No such session of yours.")
    response = jsonify(revoked=True)
    if session_id == current.id:
        extension.clear_cookie(response)
    return response


@blueprint.post("/logout-all")
@login_required
def logout_all() -> Response:
    """End every session of the requesting user, optionally but this one."""
    extension = _extension()
    state = request_state()
    assert state.session is not None
    keep_current = read_keep_current(request)
    count = extension.revoke_user_sessions(
        state.session.uname, keep_token=state.token if keep_current else None
    )
    response = jsonify(revoked=count)
    if not keep_current:
        extension.clear_cookie(response)
    return response


@blueprint.after_request
def _private(response: Response) -> Response:
    if request.method == "OPTIONS" and not response.is_json and not response.data:
        # Flask's automatic OPTIONS answer is empty; keep the prefix all JSON.
        response.set_data(json.dumps({"methods": sorted(response.allow)}))
        response.mimetype = "application/json"
    return private(response)


@blueprint.errorhandler(BadPayload)
def _bad_payload(error: BadPayload) -> Response:
    return json_error(error.status, error.code, error.message)


@blueprint.errorhandler(InvalidCredentialsError)
def _invalid_credentials(error: InvalidCredentialsError) -> Response:
    return json_error(401, "invalid_credentials", "Invalid username or password.")


@blueprint.errorhandler(InvalidAddressError)
def _invalid_address(error: InvalidAddressError) -> Response:
    return json_error(
        400,
        "invalid_address",
        "The client address of this request is not an IP address.",
    )


@blueprint.errorhandler(LoginThrottledError)
def _throttled(error: LoginThrottledError) -> Response:
    return json_error(
        429,
        "too_many_attempts",
        "Too many failed logins; try again later.",
        {"Retry-After": str(error.retry_after)},
    )


@blueprint.errorhandler(DatabaseUnavailableError)
def _unavailable(error: DatabaseUnavailableError) -> Response:
    logger.warning("session database unavailable: %s", error)
    return unavailable()


@blueprint.errorhandler(HTTPException)
def _http_error(error: HTTPException) -> Response:
    code = (error.name or "error").lower().replace(" ", "_")
    return json_error(error.code or 500, code, error.description or "")


@blueprint.errorhandler(Exception)
def _unexpected(error: Exception) -> Response:
    if isinstance(error, SQLAlchemyError):
        # The exception's text carries the statement's parameters (token
        # hashes, usernames): log the driver's reason and the SQL only.
        logger.error(
            "database error in a flask-kpsession route: %s (statement: %s)",
            describe(error),
            getattr(error, "statement", None),
        )
    else:
        logger.exception("unexpected error in a flask-kpsession route")
    return json_error(500, "internal_error", "The server could not complete this.")
