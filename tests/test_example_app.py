"""The example site through the test client, CSRF protection switched on."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient
from itsdangerous import TimestampSigner

from example_app import create_app

from .conftest import FAST_PASSWORDS, Backend


@pytest.fixture
def site(backend: Backend, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("FLASK_SECRET_KEY", "example test secret key, long enough")
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.setenv("SQLALCHEMY_DATABASE_URI", backend.url)
    app = create_app({"KPSESSION_CLEANUP_ENABLED": False, **FAST_PASSWORDS})
    yield app
    with app.app_context():
        app.extensions["sqlalchemy"].engine.dispose()


def _csrf(page: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert match, "the form carries no CSRF token"
    return match.group(1)


def _register(client: FlaskClient, username: str, password: str):
    token = _csrf(client.get("/register").get_data(as_text=True))
    return client.post(
        "/register",
        data={
            "csrf_token": token,
            "username": username,
            "password": password,
            "confirm": password,
        },
    )


def _login(client: FlaskClient, username: str, password: str):
    token = _csrf(client.get("/login").get_data(as_text=True))
    return client.post(
        "/login",
        data={"csrf_token": token, "username": username, "password": password},
    )


def test_register_log_in_see_the_profile_and_log_out(site: Flask):
    client = site.test_client()
    registered = _register(client, "grace", "hopper-1906")
    assert registered.status_code == 302
    assert registered.headers["Location"].endswith("/login?registered=1")

    logged_in = _login(client, "grace", "hopper-1906")
    assert logged_in.status_code == 302
    assert logged_in.headers["Location"].endswith("/profile")
    assert "HttpOnly" in logged_in.headers["Set-Cookie"]

    profile = client.get("/profile")
    page = profile.get_data(as_text=True)
    assert profile.status_code == 200
    assert '<span id="profile-username">grace</span>' in page
    assert "127.0.0.1" in page
    assert "UTC" in page
    old_cookie = client.get_cookie("kp_session")
    assert old_cookie is not None

    token = _csrf(page)
    logged_out = client.post("/logout", data={"csrf_token": token})
    assert logged_out.status_code == 302
    assert client.get("/profile").headers["Location"].endswith("/login")

    replay = site.test_client()
    replay.set_cookie("kp_session", old_cookie.value)
    assert replay.get("/profile").status_code == 302
    assert replay.get("/auth/check").status_code == 401


def test_the_html_login_and_the_json_login_share_the_users(site: Flask):
    client = site.test_client()
    _register(client, "linus", "torvalds-1969")
    response = site.test_client().post(
        "/auth/login", json={"username": "linus", "password": "torvalds-1969"}
    )
    assert response.status_code == 200
    token = response.get_json()["token"]

    api = site.test_client(use_cookies=False)
    me = api.get("/api/me", headers={"Authorization": f"Bearer {token}"})
    assert me.status_code == 200
    assert me.get_json()["username"] == "linus"
    assert me.get_json()["address"] == "127.0.0.1"
    assert api.get("/api/me").status_code == 401


def test_a_wrong_password_shows_a_readable_error(site: Flask):
    client = site.test_client()
    _register(client, "ada", "lovelace-1815")
    response = _login(client, "ada", "wrong password")
    assert response.status_code == 401
    assert "Invalid username or password." in response.get_data(as_text=True)


def test_registration_errors_are_readable(site: Flask):
    client = site.test_client()
    _register(client, "alan", "turing-1912")
    taken = _register(client, "alan", "another-password")
    assert taken.status_code == 400
    assert "is taken" in taken.get_data(as_text=True)
    short = _register(client, "kurt", "short")
    assert "at least 8 characters" in short.get_data(as_text=True)


def test_a_form_post_without_the_csrf_token_is_refused(site: Flask):
    client = site.test_client()
    _register(client, "barbara", "liskov-1939")
    response = client.post(
        "/login", data={"username": "barbara", "password": "liskov-1939"}
    )
    assert response.status_code == 400
    assert "kp_session" not in response.headers.get("Set-Cookie", "")
    page = response.get_data(as_text=True)
    assert "This form has expired" in page
    assert "The CSRF token is missing." in page
    assert 'href="/login"' in page
    assert client.get("/profile").status_code == 302  # nobody was logged in


def test_a_stale_csrf_token_gets_the_readable_page(
    site: Flask, monkeypatch: pytest.MonkeyPatch
):
    client = site.test_client()
    _register(client, "edsger", "dijkstra-1930")
    token = _csrf(client.get("/login").get_data(as_text=True))
    later = int(time.time()) + 2 * 3600  # past Flask-WTF's one-hour limit
    monkeypatch.setattr(TimestampSigner, "get_timestamp", lambda self: later)

    response = client.post(
        "/login",
        data={"csrf_token": token, "username": "edsger", "password": "dijkstra-1930"},
    )
    assert response.status_code == 400
    page = response.get_data(as_text=True)
    assert "This form has expired" in page
    assert "The CSRF token has expired." in page
    assert "kp_session" not in response.headers.get("Set-Cookie", "")


def test_a_csrf_token_from_another_browser_is_refused_readably(site: Flask):
    theirs = site.test_client()
    token = _csrf(theirs.get("/register").get_data(as_text=True))
    mine = site.test_client()
    mine.get("/register")

    response = mine.post(
        "/register",
        data={
            "csrf_token": token,
            "username": "mallory",
            "password": "forged-password",
            "confirm": "forged-password",
        },
    )
    assert response.status_code == 400
    assert "This form has expired" in response.get_data(as_text=True)
    assert 'href="/register"' in response.get_data(as_text=True)
    assert _login(site.test_client(), "mallory", "forged-password").status_code == 401


def test_logout_without_the_csrf_token_keeps_the_session(site: Flask):
    client = site.test_client()
    _register(client, "niklaus", "wirth-1934")
    _login(client, "niklaus", "wirth-1934")

    response = client.post("/logout")
    assert response.status_code == 400
    assert 'href="/"' in response.get_data(as_text=True)
    assert client.get("/profile").status_code == 200


def test_login_and_logout_answers_are_not_cached(site: Flask):
    client = site.test_client()
    _register(client, "donald", "knuth-1938")
    logged_in = _login(client, "donald", "knuth-1938")
    token = _csrf(client.get("/profile").get_data(as_text=True))
    logged_out = client.post("/logout", data={"csrf_token": token})

    for response in (logged_in, logged_out):
        assert response.status_code == 302
        assert "kp_session=" in response.headers["Set-Cookie"]
        assert response.headers["Cache-Control"] == "no-store"
        assert "Cookie" in response.vary


def test_config_comes_from_flask_prefixed_variables(
    backend: Backend, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setenv("FLASK_SECRET_KEY", "example test secret key, long enough")
    monkeypatch.setenv("SQLALCHEMY_DATABASE_URI", backend.url)
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.setenv("FLASK_KPSESSION_TIMEOUT", "30")
    monkeypatch.setenv("FLASK_KPSESSION_CLEANUP_ENABLED", "false")
    monkeypatch.setenv("FLASK_PROXY_HOPS", "1")
    app = create_app(FAST_PASSWORDS)
    try:
        settings = app.extensions["kpsession"].settings(app)
        assert settings.idle_timeout == timedelta(minutes=30)
        assert settings.cleanup_enabled is False
        with app.app_context():
            app.extensions["kpsession"].create_user("ken", "thompson-1943")
        response = app.test_client().post(
            "/auth/login",
            json={"username": "ken", "password": "thompson-1943"},
            headers={"X-Forwarded-For": "198.51.100.4", "X-Forwarded-Proto": "https"},
        )
        assert response.status_code == 200
        assert "Secure" in response.headers["Set-Cookie"]
        me = app.test_client(use_cookies=False).get(
            "/api/me",
            headers={
                "Authorization": f"Bearer {response.get_json()['token']}",
                "X-Forwarded-For": "198.51.100.4",
            },
        )
        assert me.get_json()["address"] == "198.51.100.4"
    finally:
        with app.app_context():
            app.extensions["sqlalchemy"].engine.dispose()


def test_a_login_without_a_client_address_explains_itself(site: Flask):
    client = site.test_client()
    _register(client, "grace", "hopper-1906")
    token = _csrf(client.get("/login").get_data(as_text=True))
    response = client.post(
        "/login",
        data={"csrf_token": token, "username": "grace", "password": "hopper-1906"},
        environ_base={"REMOTE_ADDR": ""},
    )
    assert response.status_code == 400
    assert "cannot tell your network address" in response.get_data(as_text=True)


def test_every_field_has_a_label(site: Flask):
    client = site.test_client()
    for path in ("/register", "/login"):
        page = client.get(path).get_data(as_text=True)
        ids = re.findall(r'<input type="(?:text|password)" id="([^"]+)"', page)
        assert ids
        for ident in ids:
            assert f'<label for="{ident}">' in page


def test_workers_starting_at_once_share_one_generated_secret_key(tmp_path: Path):
    """The first start generates the key; racing starts must all read it whole.

    Each of four processes reads the key of 40 fresh folders, all four meeting
    at each folder at the same instant: 40 races in one run.
    """
    script = (
        "import os, sys, time\n"
        "from example_app import _secret_key\n"
        "root, start = sys.argv[1], float(sys.argv[2])\n"
        "for n in range(40):\n"
        "    while time.time() < start + n * 0.03:\n"
        "        pass\n"
        "    print(_secret_key(os.path.join(root, str(n))))\n"
    )
    for n in range(40):
        (tmp_path / str(n)).mkdir()
    env = {k: v for k, v in os.environ.items() if k != "FLASK_SECRET_KEY"}
    start = time.time() + 1.5
    workers = [
        subprocess.Popen(
            [sys.executable, "-c", script, str(tmp_path), str(start)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for _ in range(4)
    ]
    results = [worker.communicate(timeout=60) for worker in workers]
    assert [worker.returncode for worker in workers] == [0] * 4, results

    per_worker = [out.split() for out, _ in results]
    assert all(len(keys) == 40 for keys in per_worker)
    for n in range(40):
        seen = {keys[n] for keys in per_worker}
        assert len(seen) == 1, f"folder {n}: {seen}"
        key = seen.pop()
        assert len(key) == 64
        assert (tmp_path / str(n) / "secret_key").read_text() == key
        assert sorted(p.name for p in (tmp_path / str(n)).iterdir()) == ["secret_key"]
