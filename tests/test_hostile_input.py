"""Hostile input: every malformed body, odd value and misshapen token gets 4xx JSON.

One parametrised test per kind of input, each on both backends. Every answer is
checked for its status, its JSON error shape and that nothing leaked into a 500.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from flask import Flask, Response, jsonify
from flask.testing import FlaskClient
from werkzeug.middleware.proxy_fix import ProxyFix

from flask_kpsession import KPSession, current_session, login_required

from .conftest import AppFactory

PASSWORD = "correct horse battery"
ADDR = "127.0.0.1"


@pytest.fixture
def site(app: Flask) -> Flask:
    """The app with a ``@login_required`` view; the login tests add ``user``."""

    @app.get("/private")
    @login_required
    def private_view():
        return jsonify(user=current_session.uname)

    return app


@pytest.fixture
def live_token(site: Flask) -> str:
    """A real session of alice, to prove junk never touches it."""
    kp: KPSession = site.extensions["kpsession"]
    with site.app_context():
        token = kp.generate_session(ADDR, "alice").token
    assert token is not None
    return token


def _assert_error(response: Response, status: int, code: str | None = None) -> None:
    assert response.status_code == status, response.get_data(as_text=True)[:200]
    assert response.mimetype == "application/json"
    body = response.get_json()
    assert set(body) == {"error", "message"}
    assert body["message"]
    if code is not None:
        assert body["error"] == code
    assert response.headers["Cache-Control"] == "no-store"


def _post_login(client: FlaskClient, body: bytes | str, content_type: str | None):
    headers = {} if content_type is None else {"Content-Type": content_type}
    return client.post("/auth/login", data=body, headers=headers)


# -- login bodies ---------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        "{not json",
        "",
        "{",
        '{"username": "alice",}',
        '{"username": "alice"} {"password": "x"}',
        "{'username': 'alice'}",
        b"\xff\xfe\xfa\x00garbage",
        b'{"username": "al\xffice", "password": "x"}',
        "[" * 30000,
        '{"username": "alice", "password": "' + "x" * 10,
    ],
    ids=[
        "unbalanced",
        "empty",
        "open-brace",
        "trailing-comma",
        "two-documents",
        "single-quotes",
        "binary",
        "invalid-utf8",
        "deep-nesting",
        "unterminated-string",
    ],
)
def test_malformed_json_is_400(site: Flask, user, body):
    response = _post_login(site.test_client(), body, "application/json")
    _assert_error(response, 400, "invalid_json")


@pytest.mark.parametrize(
    "body",
    [
        "[]",
        '["alice", "correct horse battery"]',
        '"alice"',
        "42",
        "3.5e300",
        "null",
        "true",
        '[{"username": "alice", "password": "correct horse battery"}]',
    ],
)
def test_json_that_is_not_an_object_is_400(site: Flask, user, body):
    response = _post_login(site.test_client(), body, "application/json")
    _assert_error(response, 400, "invalid_request")
    assert "object" in response.get_json()["message"]


_CREDENTIALS_JSON = json.dumps({"username": "alice", "password": PASSWORD})


@pytest.mark.parametrize(
    "content_type",
    [
        None,
        "text/plain",
        "text/json",
        "application/xml",
        "application/octet-stream",
        "application/javascript",
        "image/png",
        "garbage",
        "multipart/mixed; boundary=x",
    ],
)
def test_a_body_of_another_type_is_400(site: Flask, user, content_type):
    response = _post_login(site.test_client(), _CREDENTIALS_JSON, content_type)
    _assert_error(response, 400, "unsupported_media_type")
    assert "Set-Cookie" not in response.headers


def test_json_sent_as_form_fields_is_400_not_a_login(site: Flask, user):
    response = _post_login(
        site.test_client(), _CREDENTIALS_JSON, "application/x-www-form-urlencoded"
    )
    _assert_error(response, 400, "invalid_request")


@pytest.mark.parametrize(
    "fields",
    [
        {},
        {"username": "alice"},
        {"password": PASSWORD},
        {"username": "", "password": PASSWORD},
        {"username": "alice", "password": ""},
        {"USERNAME": "alice", "PASSWORD": PASSWORD},
        {"user": "alice", "pass": PASSWORD},
    ],
)
@pytest.mark.parametrize("encoding", ["json", "form"])
def test_a_missing_field_is_400_naming_it(site: Flask, user, fields, encoding):
    client = site.test_client()
    if encoding == "json":
        response = client.post("/auth/login", json=fields)
    else:
        response = client.post(
            "/auth/login",
            data=fields,
            content_type="application/x-www-form-urlencoded",
        )
    _assert_error(response, 400, "invalid_request")
    message = response.get_json()["message"]
    assert '"username"' in message or '"password"' in message


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("username", 5),
        ("username", 5.5),
        ("username", True),
        ("username", ["alice"]),
        ("username", {"name": "alice"}),
        ("password", 12345678),
        ("password", False),
        ("password", [PASSWORD]),
        ("password", {"$ne": None}),
    ],
)
def test_a_field_that_is_not_a_string_is_400(site: Flask, user, field, value):
    body: dict[str, Any] = {"username": "alice", "password": PASSWORD}
    body[field] = value
    response = site.test_client().post("/auth/login", json=body)
    _assert_error(response, 400, "invalid_request")
    assert f'"{field}" must be a string' in response.get_json()["message"]


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({"username": "a" * 256, "password": PASSWORD}, 400),
        ({"username": "alice", "password": "p" * 1025}, 400),
        ({"username": "🦊" * 256, "password": PASSWORD}, 400),
        ({"username": "a" * 70_000, "password": PASSWORD}, 413),
        ({"username": "alice", "password": PASSWORD, "pad": "x" * 70_000}, 413),
        ({f"key{i}": i for i in range(2000)}, 400),
    ],
    ids=[
        "long-username",
        "long-password",
        "long-astral-username",
        "huge-username",
        "huge-body",
        "many-keys",
    ],
)
def test_oversized_values_are_refused(site: Flask, user, body, status):
    response = site.test_client().post("/auth/login", json=body)
    _assert_error(response, status)


def test_an_oversized_form_body_is_413(site: Flask, user):
    response = site.test_client().post(
        "/auth/login", data={"username": "alice", "password": "x" * 70_000}
    )
    _assert_error(response, 413, "payload_too_large")


@pytest.mark.parametrize(
    ("raw_username", "raw_password", "status"),
    [
        (r'"\ud800"', json.dumps(PASSWORD), 400),  # lone high surrogate
        (r'"ali\udc00ce"', json.dumps(PASSWORD), 400),  # lone low surrogate
        ('"alice"', r'"pass\ud83eword"', 400),  # surrogate in the password
        (r'"al\u0000ice"', json.dumps(PASSWORD), 400),  # NUL
        (r'"\u202ealice"', json.dumps(PASSWORD), 400),  # right-to-left override
        (r'"alice\u200f"', json.dumps(PASSWORD), 400),  # right-to-left mark
        (r'"\ufeffalice"', json.dumps(PASSWORD), 400),  # byte-order mark
        (r'"ali\u200dce"', json.dumps(PASSWORD), 400),  # zero-width joiner
        (r'"alice\u2028"', json.dumps(PASSWORD), 400),  # line separator
        (r'"alice\n"', json.dumps(PASSWORD), 400),
        ('"alice"', r'"correct horse\u0000battery"', 401),  # NUL: just wrong
        ('"alice"', r'"\ud83e\udd8a fox"', 401),  # a proper pair: just wrong
        (r'"\u0430lice"', json.dumps(PASSWORD), 401),  # Cyrillic a look-alike
        (r'"ALICE"', json.dumps(PASSWORD), 401),
    ],
)
def test_odd_unicode_in_the_fields(
    site: Flask, user, raw_username, raw_password, status
):
    body = '{"username": ' + raw_username + ', "password": ' + raw_password + "}"
    response = _post_login(site.test_client(), body, "application/json")
    _assert_error(response, status)
    assert "Set-Cookie" not in response.headers


def test_invalid_utf8_in_form_fields_is_just_a_wrong_login(site: Flask, user):
    response = _post_login(
        site.test_client(),
        b"username=al%ff%feice&password=%c3%28",
        "application/x-www-form-urlencoded",
    )
    _assert_error(response, 401, "invalid_credentials")


@pytest.mark.parametrize(
    ("username", "password"),
    [
        ("Zoë 🦊 مرحبا", "pässwörd 🔑 with spaces"),
        ("José", "precomposed é"),
        ("x" * 255, "p" * 1024),
    ],
)
def test_unusual_but_valid_names_and_passwords_log_in(site: Flask, username, password):
    kp: KPSession = site.extensions["kpsession"]
    with site.app_context():
        kp.create_user(username, password)
    client = site.test_client()

    response = client.post(
        "/auth/login", json={"username": username, "password": password}
    )
    assert response.status_code == 200
    assert response.get_json()["username"] == username
    assert client.get("/auth/check").get_json()["username"] == username

    decomposed = username.replace("é", "e\u0301").replace("ë", "e\u0308")
    if decomposed != username:
        other = site.test_client().post(
            "/auth/login", json={"username": decomposed, "password": password}
        )
        _assert_error(other, 401, "invalid_credentials")


# -- tokens ---------------------------------------------------------------------

#: Misshapen tokens: each must simply name no session. ``{live}`` is replaced by
#: the real token of a live session, to build near misses of it.
BAD_TOKENS = {
    "too-short": "A" * 31,
    "too-long": "A" * 257,
    "huge": "A" * 6000,
    "standard-base64": "A" * 40 + "+/==",
    "padded-live": "{live}=",
    "truncated-live": "{live}"[:6] + "A" * 25,
    "live-plus-dot": "{live}.",
    "space-inside": "A" * 20 + " " + "A" * 20,
    "latin1": "é" * 40,
    "percent-encoded": "%41" * 20,
    "jwt-like": "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJlLXNpZw",
    "well-formed-unknown": "A" * 43,
    "sql": "' OR '1'='1' -- " + "A" * 30,
    "two-tokens": "{live},{live}",
}


def _shape(name: str, live: str) -> str:
    return BAD_TOKENS[name].replace("{live}", live)


def _assert_no_session(client: FlaskClient, **kwargs: Any) -> None:
    _assert_error(client.get("/auth/check", **kwargs), 401, "unauthorized")
    _assert_error(client.get("/private", **kwargs), 401, "unauthorized")
    _assert_error(client.get("/auth/sessions", **kwargs), 401, "unauthorized")
    logout = client.post("/auth/logout", **kwargs)
    assert logout.status_code == 200
    assert logout.get_json() == {"logged_out": False}


def _assert_still_live(site: Flask, token: str) -> None:
    kp: KPSession = site.extensions["kpsession"]
    with site.app_context():
        assert kp.session_exists(ADDR, token)


@pytest.mark.parametrize("shape", sorted(BAD_TOKENS))
def test_misshapen_bearer_tokens_name_no_session(site: Flask, live_token, shape):
    token = _shape(shape, live_token)
    client = site.test_client(use_cookies=False)
    _assert_no_session(client, headers={"Authorization": f"Bearer {token}"})
    _assert_still_live(site, live_token)


@pytest.mark.parametrize(
    "header",
    [
        "Bearer",
        "Bearer ",
        "Bearer      ",
        "Bearer\t",
        "Bearer {live} extra",
        "Bearer Bearer {live}",
        "Token {live}",
        "Basic YWxpY2U6cGFzcw==",
        "{live}",
        "Bearer\x00{live}",
        "Bearer " + "\x7f" * 43,
    ],
)
def test_malformed_authorization_headers_name_no_session(
    site: Flask, live_token, header
):
    client = site.test_client(use_cookies=False)
    value = header.replace("{live}", live_token)
    _assert_no_session(client, headers={"Authorization": value})
    _assert_still_live(site, live_token)


@pytest.mark.parametrize(
    "shape",
    sorted(name for name in BAD_TOKENS if name not in ("space-inside", "two-tokens")),
)
def test_misshapen_cookie_tokens_name_no_session(site: Flask, live_token, shape):
    token = _shape(shape, live_token)
    client = site.test_client(use_cookies=False)
    _assert_no_session(client, headers={"Cookie": f"kp_session={token}"})
    _assert_still_live(site, live_token)


@pytest.mark.parametrize(
    "cookie",
    [
        "kp_session=",
        "kp_session",
        'kp_session=""',
        'kp_session="{live}',
        "kp_session={live}\x00",
        "kp_session=A\\x41\\x41" + "A" * 40,
        "kp_session=%s" % ("\u00ff" * 50),
        "kp_session=" + "\x01" * 43,
        "=;;;==; kp_session=" + "B" * 43,
    ],
)
def test_malformed_cookie_headers_name_no_session(site: Flask, live_token, cookie):
    client = site.test_client(use_cookies=False)
    value = cookie.replace("{live}", live_token)
    _assert_no_session(client, headers={"Cookie": value})
    _assert_still_live(site, live_token)


def test_a_misshapen_token_does_not_stop_a_login(site: Flask, user, live_token):
    client = site.test_client(use_cookies=False)
    response = client.post(
        "/auth/login",
        json={"username": "alice", "password": PASSWORD},
        headers={"Authorization": "Bearer " + "é" * 40, "Cookie": "kp_session=%%%"},
    )
    assert response.status_code == 200
    assert response.get_json()["token"] != live_token
    _assert_still_live(site, live_token)


# -- other routes ------------------------------------------------------------------


@pytest.mark.parametrize(
    "session_id",
    [
        "x" * 33,
        "x" * 5000,
        "%00",
        "%ED%A0%80",
        "%F0%9F%A6%8A",
        "%C3%A9t%C3%A9",
        "..%2F..%2Fetc",
        "%27%20OR%201%3D1",
        "%FF%FE",
    ],
)
def test_odd_session_ids_to_revoke_are_404(site: Flask, live_token, session_id):
    client = site.test_client(use_cookies=False)
    response = client.delete(
        f"/auth/sessions/{session_id}",
        headers={"Authorization": f"Bearer {live_token}"},
    )
    _assert_error(response, 404, "not_found")
    _assert_still_live(site, live_token)


@pytest.mark.parametrize(
    ("body", "content_type", "status"),
    [
        ("{oops", "application/json", 400),
        ("[true]", "application/json", 400),
        ('{"keep_current": "maybe"}', "application/json", 400),
        ('{"keep_current": [true]}', "application/json", 400),
        ('{"keep_current": {"a": 1}}', "application/json", 400),
        ("keep_current=true", "text/plain", 400),
    ],
)
def test_malformed_logout_all_bodies_are_4xx(
    site: Flask, live_token, body, content_type, status
):
    client = site.test_client(use_cookies=False)
    response = client.post(
        "/auth/logout-all",
        data=body,
        headers={
            "Authorization": f"Bearer {live_token}",
            "Content-Type": content_type,
        },
    )
    _assert_error(response, status)
    _assert_still_live(site, live_token)


# -- client addresses ---------------------------------------------------------------


@pytest.mark.parametrize("remote_addr", ["", "not-an-address", "1.2.3.4.5", "::g"])
def test_a_login_without_a_usable_client_address_is_400(site: Flask, user, remote_addr):
    response = site.test_client().post(
        "/auth/login",
        json={"username": "alice", "password": PASSWORD},
        environ_base={"REMOTE_ADDR": remote_addr},
    )
    _assert_error(response, 400, "invalid_address")
    assert "Set-Cookie" not in response.headers


def test_junk_forwarded_for_behind_proxyfix_is_400_not_500(
    make_app: AppFactory,
):
    app = make_app()
    app.wsgi_app = ProxyFix(app.wsgi_app, x_for=1)  # type: ignore[method-assign]
    kp: KPSession = app.extensions["kpsession"]
    with app.app_context():
        kp.create_user("alice", PASSWORD)
    client = app.test_client()
    credentials = {"username": "alice", "password": PASSWORD}

    junk = client.post(
        "/auth/login", json=credentials, headers={"X-Forwarded-For": "<script>"}
    )
    _assert_error(junk, 400, "invalid_address")

    real = client.post(
        "/auth/login", json=credentials, headers={"X-Forwarded-For": "203.0.113.9"}
    )
    assert real.status_code == 200
    with app.app_context():
        session = kp.get_session("203.0.113.9", real.get_json()["token"])
    assert session.addr == "203.0.113.9"
