"""Response details: JSON everywhere under the prefix, cache headers, cookies, dates."""

from __future__ import annotations

import re
from datetime import datetime, timedelta

import pytest
from flask import Flask, Response, make_response
from flask.testing import FlaskClient
from werkzeug.middleware.proxy_fix import ProxyFix

from flask_kpsession import KPSession, UserSession
from flask_kpsession.clock import UTC

from .conftest import AppFactory

ISO_UTC = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}\+00:00")


def _assert_private(response: Response) -> None:
    assert response.headers["Cache-Control"] == "no-store"
    assert "Cookie" in response.vary


def _assert_json_error(response: Response, status: int, code: str) -> None:
    assert response.status_code == status
    assert response.mimetype == "application/json"
    body = response.get_json()
    assert set(body) == {"error", "message"}
    assert body["error"] == code
    assert body["message"]
    _assert_private(response)


def _login(client: FlaskClient, user: tuple[str, str], **kwargs):
    return client.post(
        "/auth/login", json={"username": user[0], "password": user[1]}, **kwargs
    )


@pytest.mark.parametrize(
    "path", ["/auth/nope", "/auth", "/auth/", "/auth/check/", "/auth/login/x"]
)
def test_an_unknown_path_under_the_prefix_is_a_json_404(client: FlaskClient, path):
    _assert_json_error(client.get(path), 404, "not_found")


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("GET", "/auth/login", {"POST", "OPTIONS"}),
        ("PUT", "/auth/logout", {"POST", "OPTIONS"}),
        ("DELETE", "/auth/check", {"GET", "HEAD", "OPTIONS"}),
        ("POST", "/auth/check", {"GET", "HEAD", "OPTIONS"}),
    ],
)
def test_a_wrong_method_is_a_json_405_with_allow(
    client: FlaskClient, method, path, allowed
):
    response = client.open(path, method=method)
    _assert_json_error(response, 405, "method_not_allowed")
    assert set(response.headers["Allow"].split(", ")) >= allowed
    assert method not in response.headers["Allow"].split(", ")


def test_a_doubled_slash_under_the_prefix_redirects_in_json(client: FlaskClient):
    response = client.get("/auth//check")
    assert response.status_code == 308
    assert response.headers["Location"].endswith("/auth/check")
    assert response.get_json()["error"] == "moved"
    _assert_private(response)


def test_options_under_the_prefix_answers_json(client: FlaskClient):
    response = client.options("/auth/check")
    assert response.status_code == 200
    assert set(response.get_json()["methods"]) == {"GET", "HEAD", "OPTIONS"}
    _assert_private(response)


def test_the_host_apps_own_404_pages_stay_its_own(app: Flask):
    @app.errorhandler(404)
    def host_not_found(error):
        return "host page not found", 404

    response = app.test_client().get("/elsewhere")
    assert response.status_code == 404
    assert response.get_data(as_text=True) == "host page not found"
    assert "Cache-Control" not in response.headers


def test_with_an_empty_prefix_host_404s_stay_html_and_our_405s_are_json(
    make_app: AppFactory,
):
    app = make_app(KPSESSION_URL_PREFIX="")

    @app.get("/hello")
    def hello():
        return "hello"

    client = app.test_client()
    missing = client.get("/no-such-page")
    assert missing.status_code == 404
    assert missing.mimetype == "text/html"

    host_method = client.post("/hello")
    assert host_method.status_code == 405
    assert host_method.mimetype == "text/html"

    ours = client.get("/login")
    _assert_json_error(ours, 405, "method_not_allowed")
    assert "POST" in ours.headers["Allow"]


def test_with_routes_off_the_prefix_is_left_to_the_host(make_app: AppFactory):
    app = make_app(KPSESSION_ROUTES_ENABLED=False)
    response = app.test_client().get("/auth/check")
    assert response.status_code == 404
    assert response.mimetype == "text/html"


def test_every_blueprint_answer_is_private(client: FlaskClient, user):
    answers = [
        _login(client, ("alice", "wrong password")),
        client.post("/auth/login", data="x", content_type="text/plain"),
        client.get("/auth/check"),
        _login(client, user),
        client.get("/auth/check"),
        client.post("/auth/logout"),
    ]
    assert [a.status_code for a in answers] == [401, 400, 401, 200, 200, 200]
    for answer in answers:
        assert answer.mimetype == "application/json"
        _assert_private(answer)


def test_a_host_view_that_sets_or_clears_the_cookie_gets_no_store(
    app: Flask, kp: KPSession, user
):
    @app.post("/my-login")
    def my_login():
        session = kp.log_in(*user)
        response = make_response("welcome")
        kp.set_cookie(response, session)
        return response

    @app.post("/my-logout")
    def my_logout():
        kp.log_out()
        response = make_response("bye")
        kp.clear_cookie(response)
        return response

    @app.post("/raw-clear")
    def raw_clear():
        response = make_response("cleared by hand")
        response.delete_cookie("kp_session")
        return response

    @app.get("/plain")
    def plain():
        return "nothing personal"

    client = app.test_client()
    for path in ("/my-login", "/my-logout", "/raw-clear"):
        response = client.post(path)
        assert response.status_code == 200, path
        assert "kp_session=" in response.headers["Set-Cookie"], path
        _assert_private(response)

    plain_answer = client.get("/plain")
    assert "Cache-Control" not in plain_answer.headers
    assert "Vary" not in plain_answer.headers


def _attributes(header: str) -> dict[str, str]:
    parts = [part.strip() for part in header.split(";")]
    attributes = {}
    for part in parts[1:]:
        name, _, value = part.partition("=")
        attributes[name.lower()] = value
    return attributes


@pytest.mark.parametrize("scheme", ["http", "https"])
def test_cookie_attributes_when_set_and_cleared(app: Flask, user, scheme):
    app.config["SESSION_COOKIE_DOMAIN"] = "example.test"  # must not leak in
    client = app.test_client()
    base = f"{scheme}://localhost"

    set_header = _login(client, user, base_url=base).headers["Set-Cookie"]
    cleared = client.post("/auth/logout", base_url=base).headers["Set-Cookie"]

    for header in (set_header, cleared):
        attributes = _attributes(header)
        assert header.startswith("kp_session=")
        assert "httponly" in attributes
        assert attributes["samesite"] == "Lax"
        assert attributes["path"] == "/"
        assert "domain" not in attributes
        assert ("secure" in attributes) == (scheme == "https")
    assert "max-age" not in _attributes(set_header)  # ends with the browser session
    assert _attributes(cleared)["max-age"] == "0"


def test_behind_a_tls_proxy_the_cookie_is_secure(app: Flask, user):
    app.wsgi_app = ProxyFix(app.wsgi_app, x_proto=1)  # type: ignore[method-assign]
    response = _login(app.test_client(), user, headers={"X-Forwarded-Proto": "https"})
    assert "secure" in _attributes(response.headers["Set-Cookie"])


def test_configured_cookie_attributes(make_app: AppFactory):
    app = make_app(
        KPSESSION_COOKIE_SECURE=True,
        KPSESSION_COOKIE_SAMESITE="strict",
        KPSESSION_COOKIE_HOST_PREFIX=True,
    )
    kp: KPSession = app.extensions["kpsession"]
    with app.app_context():
        kp.create_user("bob", "a long password")
    response = app.test_client().post(
        "/auth/login", json={"username": "bob", "password": "a long password"}
    )
    header = response.headers["Set-Cookie"]
    assert header.startswith("__Host-kp_session=")
    attributes = _attributes(header)
    assert attributes["samesite"] == "Strict"
    assert "secure" in attributes  # even on this plain-HTTP test request
    assert attributes["path"] == "/"
    assert "domain" not in attributes


def test_datetimes_are_iso_8601_utc_with_microseconds(
    app: Flask, kp: KPSession, client: FlaskClient, user
):
    login = _login(client, user).get_json()
    check = client.get("/auth/check").get_json()
    (listed,) = client.get("/auth/sessions").get_json()["sessions"]

    stamps = [login["expires_at"]]
    stamps += [check[k] for k in ("created_at", "last_used_at", "expires_at")]
    stamps += [listed[k] for k in ("created_at", "last_used_at", "expires_at")]
    for value in stamps:
        assert ISO_UTC.fullmatch(value), value
        assert datetime.fromisoformat(value).utcoffset() == timedelta(0)

    with app.app_context():
        stored = kp.get_session("127.0.0.1", login["token"])
    assert datetime.fromisoformat(check["created_at"]) == stored.created_at
    assert datetime.fromisoformat(check["last_used_at"]) == stored.last_used_at
    assert datetime.fromisoformat(check["expires_at"]) == stored.expires_at
    assert check["expires_at"] == login["expires_at"]


def test_a_whole_second_still_shows_its_microseconds(app: Flask, kp: KPSession):
    moment = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=1)
    token = "W" * 43
    with app.app_context():
        kp.add_session(UserSession("127.0.0.1", token, "alice", created_at=moment))
    response = app.test_client(use_cookies=False).get(
        "/auth/check", headers={"Authorization": f"Bearer {token}"}
    )
    body = response.get_json()
    assert body["created_at"] == moment.strftime("%Y-%m-%dT%H:%M:%S.000000+00:00")
