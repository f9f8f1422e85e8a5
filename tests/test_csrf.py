"""Cross-site request forgery: cookie-authenticated unsafe requests from elsewhere."""

from __future__ import annotations

import pytest
from flask import Flask, jsonify
from flask.testing import FlaskClient

from flask_kpsession import current_session, login_required

from .conftest import AppFactory

PASSWORD = "correct horse battery"
CROSS_SITE = {"Sec-Fetch-Site": "cross-site", "Origin": "https://evil.example"}
SAME_ORIGIN = {"Sec-Fetch-Site": "same-origin", "Origin": "http://localhost"}


def _site(make_app: AppFactory, user: bool = True, **config: object) -> Flask:
    app = make_app(**config)
    if user:
        with app.app_context():
            app.extensions["kpsession"].create_user("alice", PASSWORD)

    @app.post("/transfer")
    @login_required
    def transfer():
        return jsonify(done_for=current_session.uname)

    @app.post("/public")
    def public():
        return jsonify(user=current_session.uname if current_session else None)

    return app


def _logged_in(app: Flask) -> tuple[FlaskClient, str]:
    client = app.test_client()
    response = client.post(
        "/auth/login", json={"username": "alice", "password": PASSWORD}
    )
    assert response.status_code == 200
    return client, response.get_json()["token"]


def _refused(response) -> None:
    assert response.status_code == 403
    assert response.get_json() == {
        "error": "csrf_refused",
        "message": "This request was refused as a possible cross-site request forgery.",
    }


def test_a_cross_site_post_with_the_cookie_is_refused(make_app: AppFactory):
    app = _site(make_app)
    client, _ = _logged_in(app)

    _refused(client.post("/transfer", headers=CROSS_SITE))
    assert client.post("/transfer", headers=SAME_ORIGIN).status_code == 200
    assert client.post("/transfer").get_json() == {"done_for": "alice"}  # no browser
    # A view that needs no session still runs, but sees none.
    assert client.post("/public", headers=CROSS_SITE).get_json() == {"user": None}


@pytest.mark.parametrize("method", ["PUT", "PATCH", "DELETE"])
def test_every_unsafe_method_is_checked(make_app: AppFactory, method: str):
    app = _site(make_app)

    @app.route("/thing", methods=[method])
    @login_required
    def thing():
        return jsonify(ok=True)

    client, _ = _logged_in(app)
    _refused(client.open("/thing", method=method, headers=CROSS_SITE))
    assert client.open("/thing", method=method, headers=SAME_ORIGIN).status_code == 200


def test_safe_methods_are_not_refused(make_app: AppFactory):
    app = _site(make_app)
    client, _ = _logged_in(app)
    assert client.get("/auth/check", headers=CROSS_SITE).status_code == 200


def test_a_sibling_subdomain_is_refused_unless_trusted(make_app: AppFactory):
    sibling = {"Sec-Fetch-Site": "same-site", "Origin": "https://blog.example.com"}
    app = _site(make_app)
    client, _ = _logged_in(app)
    _refused(client.post("/transfer", headers=sibling))

    trusting = _site(
        make_app, False, KPSESSION_CSRF_TRUSTED_ORIGINS=["https://blog.example.com"]
    )
    client, _ = _logged_in(trusting)
    assert client.post("/transfer", headers=sibling).status_code == 200


@pytest.mark.parametrize(
    ("origin", "status"),
    [
        ("http://localhost", 200),
        ("https://localhost", 200),
        ("http://localhost:80", 200),
        ("http://evil.example", 403),
        ("http://localhost.evil.example", 403),
        ("http://localhost:8080", 403),
        ("null", 403),
        ("not a url", 403),
    ],
)
def test_without_sec_fetch_site_the_origin_is_compared_with_the_host(
    make_app: AppFactory, origin: str, status: int
):
    app = _site(make_app)
    client, _ = _logged_in(app)
    response = client.post("/transfer", headers={"Origin": origin})
    assert response.status_code == status


def test_bearer_requests_are_never_refused(make_app: AppFactory):
    app = _site(make_app)
    _, token = _logged_in(app)
    api = app.test_client(use_cookies=False)
    response = api.post(
        "/transfer", headers={**CROSS_SITE, "Authorization": f"Bearer {token}"}
    )
    assert response.get_json() == {"done_for": "alice"}


def test_a_cross_site_logout_is_refused_and_keeps_the_session(make_app: AppFactory):
    app = _site(make_app)
    client, token = _logged_in(app)

    _refused(client.post("/auth/logout", headers=CROSS_SITE))
    assert client.get("/auth/check").status_code == 200
    assert client.post("/auth/logout", headers=SAME_ORIGIN).get_json() == {
        "logged_out": True
    }


def test_a_login_posted_from_another_site_is_refused(make_app: AppFactory):
    app = _site(make_app)
    client = app.test_client()
    body = {"username": "alice", "password": PASSWORD}

    refused = client.post("/auth/login", json=body, headers=CROSS_SITE)
    _refused(refused)
    assert "Set-Cookie" not in refused.headers
    _refused(client.post("/auth/login", json=body, headers={"Origin": "null"}))
    assert client.post("/auth/login", json=body, headers=SAME_ORIGIN).status_code == 200


def test_csrf_protection_can_be_switched_off(make_app: AppFactory):
    app = _site(make_app, KPSESSION_CSRF_PROTECTION=False)
    client, _ = _logged_in(app)
    assert client.post("/transfer", headers=CROSS_SITE).status_code == 200


def test_the_double_submit_token(make_app: AppFactory):
    app = _site(make_app, KPSESSION_CSRF_DOUBLE_SUBMIT=True)
    client, token = _logged_in(app)
    cookie = client.get_cookie("kp_session_csrf")
    assert cookie is not None
    assert not cookie.http_only
    assert cookie.value != token and len(cookie.value) == 43

    _refused(client.post("/transfer", headers=SAME_ORIGIN))
    _refused(client.post("/transfer", headers={"X-CSRF-Token": "x" * 43}))
    _refused(client.post("/transfer", headers={"X-CSRF-Token": token}))
    good = client.post("/transfer", headers={"X-CSRF-Token": cookie.value})
    assert good.get_json() == {"done_for": "alice"}

    # Bearer clients need no token.
    api = app.test_client(use_cookies=False)
    bearer = {"Authorization": f"Bearer {token}"}
    assert api.post("/transfer", headers=bearer).status_code == 200

    _refused(client.post("/auth/logout"))
    logout = client.post("/auth/logout", headers={"X-CSRF-Token": cookie.value})
    assert logout.get_json() == {"logged_out": True}
    cleared = logout.headers.getlist("Set-Cookie")
    assert any(line.startswith("kp_session_csrf=;") for line in cleared)
    assert any(line.startswith("kp_session=;") for line in cleared)


def test_a_login_needs_no_double_submit_token(make_app: AppFactory):
    app = _site(make_app, KPSESSION_CSRF_DOUBLE_SUBMIT=True)
    client, first = _logged_in(app)
    again = client.post(
        "/auth/login",
        json={"username": "alice", "password": PASSWORD},
        headers=SAME_ORIGIN,
    )
    assert again.status_code == 200
    assert again.get_json()["token"] != first
    stale = app.test_client(use_cookies=False)
    assert (
        stale.get(
            "/auth/check", headers={"Authorization": f"Bearer {first}"}
        ).status_code
        == 401
    )


def test_the_double_submit_token_survives_a_key_rotation(make_app: AppFactory):
    old = _site(make_app, KPSESSION_CSRF_DOUBLE_SUBMIT=True)
    client, token = _logged_in(old)
    csrf = client.get_cookie("kp_session_csrf")
    assert csrf is not None

    rotated = make_app(
        KPSESSION_CSRF_DOUBLE_SUBMIT=True,
        SECRET_KEY="a brand new secret key, long enough as well",
        SECRET_KEY_FALLBACKS=[old.config["SECRET_KEY"]],
    )

    @rotated.post("/transfer")
    @login_required
    def transfer():
        return jsonify(done_for=current_session.uname)

    other = rotated.test_client()
    other.set_cookie("kp_session", token)
    response = other.post("/transfer", headers={"X-CSRF-Token": csrf.value})
    assert response.get_json() == {"done_for": "alice"}
