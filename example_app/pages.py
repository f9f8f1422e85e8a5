"""The example site's pages: home, register, log in, profile, log out, and /api/me."""

from __future__ import annotations

from flask import (
    Blueprint,
    Response,
    current_app,
    jsonify,
    make_response,
    redirect,
    render_template,
    request,
    url_for,
)
from werkzeug.wrappers import Response as BaseResponse

from flask_kpsession import (
    DatabaseUnavailableError,
    InvalidAddressError,
    InvalidCredentialsError,
    KPSession,
    LoginThrottledError,
    current_session,
    login_required,
)
from flask_kpsession.hook import request_state
from flask_kpsession.responses import session_fields

pages = Blueprint("pages", __name__)


def _kp() -> KPSession:
    extension: KPSession = current_app.extensions["kpsession"]
    return extension


def _unavailable_page() -> Response:
    return make_response(render_template("unavailable.html"), 503)


@pages.get("/")
def index() -> str:
    return render_template("index.html")


@pages.route("/register", methods=["GET", "POST"])
def register() -> str | Response | BaseResponse:
    if request.method == "GET":
        return render_template("register.html")
    username = request.form.get("username", "")
    password = request.form.get("password", "")
    confirm = request.form.get("confirm", "")
    error = None
    if password != confirm:
        error = "The two passwords differ."
    elif len(password) < 8:
        error = "Choose a password of at least 8 characters."
    else:
        try:
            _kp().create_user(username, password)
        except DatabaseUnavailableError:
            return _unavailable_page()
        except ValueError as problem:
            error = _readable(problem, username)
    if error:
        page = render_template("register.html", error=error, username=username)
        return make_response(page, 400)
    return redirect(url_for("pages.login", registered=1))


def _readable(problem: ValueError, username: str) -> str:
    text = str(problem)
    if "already exists" in text:
        return f"The username {username!r} is taken; choose another."
    return text[:1].upper() + text[1:] + "."


@pages.route("/login", methods=["GET", "POST"])
def login() -> str | Response | BaseResponse:
    if request.method == "GET":
        return render_template(
            "login.html", registered=bool(request.args.get("registered"))
        )
    username = request.form.get("username", "")
    password = request.form.get("password", "")
    try:
        session = _kp().log_in(username, password)
    except LoginThrottledError as error:
        page = render_template(
            "login.html",
            error="Too many failed attempts; wait a few minutes and try again.",
            username=username,
        )
        response = make_response(page, 429)
        response.headers["Retry-After"] = str(error.retry_after)
        return response
    except InvalidCredentialsError:
        page = render_template(
            "login.html", error="Invalid username or password.", username=username
        )
        return make_response(page, 401)
    except InvalidAddressError:
        page = render_template(
            "login.html",
            error="This server cannot tell your network address, so it cannot "
            "start a session; its operator needs to fix the proxy set-up.",
            username=username,
        )
        return make_response(page, 400)
    except DatabaseUnavailableError:
        return _unavailable_page()
    response = redirect(url_for("pages.profile"))
    _kp().set_cookie(response, session)
    return response


@pages.get("/profile")
def profile() -> str | Response | BaseResponse:
    if request_state().unavailable:
        return _unavailable_page()
    if not current_session:
        return redirect(url_for("pages.login"))
    response = make_response(render_template("profile.html", session=current_session))
    response.headers["Cache-Control"] = "no-store"
    return response


@pages.post("/logout")
def logout() -> Response | BaseResponse:
    try:
        _kp().log_out()
    except DatabaseUnavailableError:
        return _unavailable_page()
    response = redirect(url_for("pages.index"))
    _kp().clear_cookie(response)
    return response


@pages.get("/api/me")
@login_required
def api_me() -> Response:
    """A JSON endpoint for API clients: send ``Authorization: Bearer <token>``."""
    return jsonify(session_fields(current_session) | {"address": current_session.addr})
