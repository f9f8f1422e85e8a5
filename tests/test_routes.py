"""The blueprint over real HTTP through the test client: /login, /logout, /check."""

from __future__ import annotations

import io
import json
from datetime import datetime, timedelta

import pytest
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.test import create_environ, run_wsgi_app

from flask_kpsession import KPSession

from .conftest import AppFactory


def _login(client: FlaskClient, user: tuple[str, str]):
    username, password = user
    return client.post("/auth/login", json={"username": username, "password": password})


def test_login_answers_token_and_sets_a_safe_cookie(client: FlaskClient, user):
    response = _login(client, user)

    assert response.status_code == 200
    body = response.get_json()
    assert body["username"] == "alice"
    assert len(body["token"]) >= 43
    expires = datetime.fromisoformat(body["expires_at"])
    assert expires.utcoffset() == timedelta(0)
    assert "." in body["expires_at"]  # microseconds are always written

    cookie = response.headers["Set-Cookie"]
    assert cookie.startswith(f"kp_session={body['token']};")
    assert "HttpOnly" in cookie
    assert "SameSite=Lax" in cookie
    assert "Path=/" in cookie
    assert "Domain" not in cookie
    assert "Secure" not in cookie  # plain HTTP test request
    assert response.headers["Cache-Control"] == "no-store"
    assert "Cookie" in response.headers["Vary"]


def test_login_over_https_marks_the_cookie_secure(client: FlaskClient, user):
    response = client.post(
        "/auth/login",
        json={"username": user[0], "password": user[1]},
        base_url="https://localhost",
    )
    assert response.status_code == 200
    assert "Secure" in response.headers["Set-Cookie"]


def test_login_accepts_form_fields(client: FlaskClient, user):
    response = client.post(
        "/auth/login", data={"username": user[0], "password": user[1]}
    )
    assert response.status_code == 200
    assert response.get_json()["username"] == "alice"


def test_unknown_user_and_wrong_password_get_one_generic_answer(
    client: FlaskClient, user
):
    wrong = client.post("/auth/login", json={"username": "alice", "password": "nope"})
    unknown = client.post("/auth/login", json={"username": "zed", "password": "nope"})

    assert wrong.status_code == unknown.status_code == 401
    assert wrong.get_json() == unknown.get_json()
    assert wrong.get_json() == {
        "error": "invalid_credentials",
        "message": "Invalid username or password.",
    }
    assert "Set-Cookie" not in wrong.headers


def test_usernames_match_exactly(client: FlaskClient, user):
    for variant in ("Alice", "alice ", " alice", "ALICE"):
        response = client.post(
            "/auth/login", json={"username": variant, "password": user[1]}
        )
        assert response.status_code == 401, variant


def test_each_login_issues_a_fresh_token_and_ends_the_presented_one(
    client: FlaskClient, user
):
    first = _login(client, user).get_json()["token"]
    second = _login(client, user).get_json()["token"]

    assert first != second
    old = client.get("/auth/check", headers={"Authorization": f"Bearer {first}"})
    assert old.status_code == 401
    new = client.get("/auth/check", headers={"Authorization": f"Bearer {second}"})
    assert new.status_code == 200


def test_login_never_adopts_a_token_the_client_presents(
    app: Flask, client: FlaskClient, user
):
    chosen = "C" * 43
    client.set_cookie("kp_session", chosen)
    token = _login(client, user).get_json()["token"]

    assert token != chosen
    check = client.get("/auth/check", headers={"Authorization": f"Bearer {chosen}"})
    assert check.status_code == 401


def test_check_describes_the_live_session(client: FlaskClient, user):
    token = _login(client, user).get_json()["token"]
    response = client.get("/auth/check")

    assert response.status_code == 200
    body = response.get_json()
    assert set(body) == {"username", "created_at", "last_used_at", "expires_at"}
    assert body["username"] == "alice"
    created = datetime.fromisoformat(body["created_at"])
    expires = datetime.fromisoformat(body["expires_at"])
    assert expires - created == timedelta(minutes=120)
    assert token not in response.get_data(as_text=True)
    assert response.headers["Cache-Control"] == "no-store"


def test_check_with_a_bearer_token_and_no_cookie(app: Flask, user):
    token = _login(app.test_client(), user).get_json()["token"]
    fresh = app.test_client(use_cookies=False)

    response = fresh.get("/auth/check", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200
    assert response.get_json()["username"] == "alice"


def test_check_without_a_session_is_401_json(client: FlaskClient):
    response = client.get("/auth/check")

    assert response.status_code == 401
    assert response.get_json() == {
        "error": "unauthorized",
        "message": "A valid session is required.",
    }


def test_a_token_in_the_url_authenticates_nothing(app: Flask, user):
    token = _login(app.test_client(), user).get_json()["token"]
    fresh = app.test_client(use_cookies=False)

    for url in (f"/auth/check?token={token}", f"/auth/check?kp_session={token}"):
        assert fresh.get(url).status_code == 401


def test_logout_deletes_the_session_and_clears_the_cookie(client: FlaskClient, user):
    token = _login(client, user).get_json()["token"]

    response = client.post("/auth/logout")
    assert response.status_code == 200
    assert response.get_json() == {"logged_out": True}
    cookie = response.headers["Set-Cookie"]
    assert cookie.startswith("kp_session=;")
    assert "Expires=Thu, 01 Jan 1970" in cookie
    assert response.headers["Clear-Site-Data"] == '"cache"'

    replay = client.get("/auth/check", headers={"Authorization": f"Bearer {token}"})
    assert replay.status_code == 401


def test_logout_without_a_session_still_answers_200(client: FlaskClient):
    response = client.post("/auth/logout")
    assert response.status_code == 200
    assert response.get_json() == {"logged_out": False}
    assert "kp_session=;" in response.headers["Set-Cookie"]


def test_logout_from_a_foreign_address_keeps_the_session(app: Flask, user):
    token = _login(app.test_client(), user).get_json()["token"]
    stranger = app.test_client(use_cookies=False)
    headers = {"Authorization": f"Bearer {token}"}

    response = stranger.post(
        "/auth/logout", headers=headers, environ_base={"REMOTE_ADDR": "192.0.2.1"}
    )
    assert response.status_code == 200
    assert response.get_json() == {"logged_out": False}
    assert stranger.get("/auth/check", headers=headers).status_code == 200


def test_a_token_from_a_foreign_address_is_refused(app: Flask, user):
    token = _login(app.test_client(), user).get_json()["token"]
    stranger = app.test_client(use_cookies=False)

    response = stranger.get(
        "/auth/check",
        headers={"Authorization": f"Bearer {token}"},
        environ_base={"REMOTE_ADDR": "192.0.2.1"},
    )
    assert response.status_code == 401


@pytest.mark.parametrize(
    ("kwargs", "status", "code"),
    [
        (
            {"data": "{not json", "content_type": "application/json"},
            400,
            "invalid_json",
        ),
        ({"json": ["alice", "pw"]}, 400, "invalid_request"),
        ({"json": {"username": "alice"}}, 400, "invalid_request"),
        ({"json": {"username": 5, "password": "pw"}}, 400, "invalid_request"),
        ({"data": "u=a", "content_type": "text/plain"}, 400, "unsupported_media_type"),
        ({"data": "u=a"}, 400, "unsupported_media_type"),
        ({}, 400, "unsupported_media_type"),
    ],
)
def test_malformed_login_bodies_get_4xx_json(client: FlaskClient, kwargs, status, code):
    response = client.post("/auth/login", **kwargs)
    assert response.status_code == status
    assert response.get_json()["error"] == code
    assert response.get_json()["message"]


def test_empty_url_prefix_mounts_the_routes_at_the_root(make_app: AppFactory):
    app = make_app(KPSESSION_URL_PREFIX="")
    with app.app_context():
        app.extensions["kpsession"].create_user("bob", "a long password")
    client = app.test_client()

    response = client.post(
        "/login", json={"username": "bob", "password": "a long password"}
    )
    assert response.status_code == 200
    assert client.get("/check").get_json()["username"] == "bob"


def test_custom_prefix_and_cookie_name(make_app: AppFactory):
    app = make_app(KPSESSION_URL_PREFIX="/api/session", KPSESSION_COOKIE_NAME="sid")
    kp: KPSession = app.extensions["kpsession"]
    with app.app_context():
        kp.create_user("bob", "a long password")
    client = app.test_client()

    response = client.post(
        "/api/session/login", json={"username": "bob", "password": "a long password"}
    )
    assert response.headers["Set-Cookie"].startswith("sid=")
    assert client.get("/api/session/check").status_code == 200
    assert client.get("/auth/check").status_code == 404


class _EndlessBody(io.RawIOBase):
    """A request body of ``size`` bytes that counts how much was read of it."""

    def __init__(self, size: int) -> None:
        self.left = size
        self.read_bytes = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        count = min(len(buffer), self.left)
        buffer[:count] = b"a" * count
        self.left -= count
        self.read_bytes += count
        return count


@pytest.mark.parametrize(
    "content_type", ["application/json", "application/x-www-form-urlencoded"]
)
@pytest.mark.parametrize("path", ["/auth/login", "/auth/logout-all"])
def test_a_chunked_body_is_cut_off_at_the_limit_not_read_whole(
    app: Flask, user, content_type: str, path: str
):
    """No Content-Length to check up front: the read itself must stop."""
    token = _login(app.test_client(), user).get_json()["token"]
    body = _EndlessBody(50 * 1024 * 1024)
    environ = create_environ(
        path,
        method="POST",
        content_type=content_type,
        headers={"Authorization": f"Bearer {token}"},
    )
    environ.pop("CONTENT_LENGTH", None)
    environ["REMOTE_ADDR"] = "127.0.0.1"
    environ["wsgi.input"] = io.BufferedReader(body)
    environ["wsgi.input_terminated"] = True  # what a server sets for chunked bodies

    chunks, status, _ = run_wsgi_app(app, environ)
    assert status.startswith("413")
    assert json.loads(b"".join(chunks))["error"] == "payload_too_large"
    assert body.read_bytes < 1024 * 1024


def test_logout_all_with_an_empty_json_body_ends_everything(client: FlaskClient, user):
    _login(client, user)
    response = client.post("/auth/logout-all", data="", content_type="application/json")
    assert response.status_code == 200
    assert response.get_json() == {"revoked": 1}
