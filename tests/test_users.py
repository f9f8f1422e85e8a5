"""The built-in users table, its argon2id hashes, and ``@kp.verify_password``."""

from __future__ import annotations

import pytest
from argon2 import PasswordHasher
from argon2.low_level import Type
from flask import Flask
from sqlalchemy import select, update

from flask_kpsession import KPSession

from .conftest import AppFactory


def _stored_hash(app: Flask, kp: KPSession, username: str) -> str:
    with app.app_context():
        table = kp.db().metadata.tables["kp_users"]
        with kp.db().engine.connect() as conn:
            return conn.execute(
                select(table.c.password_hash).where(table.c.username == username)
            ).scalar_one()


def test_passwords_are_stored_as_argon2id_at_or_above_owasp_minimum(
    app: Flask, kp: KPSession, user
):
    stored = _stored_hash(app, kp, "alice")
    assert stored.startswith("$argon2id$")
    assert user[1] not in stored
    params = dict(part.split("=") for part in stored.split("$")[3].split(","))
    assert int(params["m"]) >= 19 * 1024
    assert int(params["t"]) >= 2
    assert int(params["p"]) >= 1


def test_default_parameters_exceed_the_minimum(make_app: AppFactory):
    app = make_app(
        KPSESSION_PASSWORD_TIME_COST=3,
        KPSESSION_PASSWORD_MEMORY_COST=65536,
        KPSESSION_PASSWORD_PARALLELISM=4,
    )
    kp: KPSession = app.extensions["kpsession"]
    with app.app_context():
        kp.create_user("erin", "a long enough password")
    assert "$m=65536,t=3,p=4$" in _stored_hash(app, kp, "erin")


def test_usernames_are_unique_exactly(app: Flask, kp: KPSession):
    with app.app_context():
        kp.create_user("alice", "password one")
        kp.create_user("alice ", "password two")
        kp.create_user("Alice", "password three")
        with pytest.raises(ValueError, match="already exists"):
            kp.create_user("alice", "password four")
    client = app.test_client()
    for name, password in [("alice ", "password two"), ("Alice", "password three")]:
        response = client.post(
            "/auth/login", json={"username": name, "password": password}
        )
        assert response.status_code == 200
        assert response.get_json()["username"] == name


@pytest.mark.parametrize(
    ("username", "password"),
    [
        ("", "password"),
        ("x" * 256, "password"),
        ("bad\nname", "password"),
        ("ok", ""),
        ("ok", "p" * 1025),
    ],
)
def test_create_user_refuses_bad_input(app: Flask, kp: KPSession, username, password):
    with app.app_context(), pytest.raises(ValueError):
        kp.create_user(username, password)


def test_unknown_user_costs_one_hash_verification_like_a_wrong_password(
    app: Flask, user, monkeypatch: pytest.MonkeyPatch
):
    calls: list[str] = []
    original = PasswordHasher.verify

    def counting(self, stored, password):
        calls.append(stored)
        return original(self, stored, password)

    monkeypatch.setattr(PasswordHasher, "verify", counting)
    client = app.test_client()
    client.post("/auth/login", json={"username": "alice", "password": "wrong"})
    client.post("/auth/login", json={"username": "nobody", "password": "wrong"})

    assert len(calls) == 2
    assert all(stored.startswith("$argon2id$v=19$m=19456,t=2,p=1$") for stored in calls)


def test_a_weaker_stored_hash_is_upgraded_at_login(app: Flask, kp: KPSession, user):
    weak = PasswordHasher(
        time_cost=1, memory_cost=8 * 1024, parallelism=1, type=Type.ID
    )
    with app.app_context():
        table = kp.db().metadata.tables["kp_users"]
        with kp.db().engine.begin() as conn:
            conn.execute(update(table).values(password_hash=weak.hash(user[1])))

    response = app.test_client().post(
        "/auth/login", json={"username": user[0], "password": user[1]}
    )
    assert response.status_code == 200
    assert "$m=19456,t=2,p=1$" in _stored_hash(app, kp, "alice")


def test_verify_password_replaces_the_built_in_table(make_app: AppFactory):
    kp = KPSession()
    seen: list[tuple[str, str]] = []

    @kp.verify_password
    def check(username: str, password: str) -> bool:
        seen.append((username, password))
        return username == "frank" and password == "from the host app"

    app = make_app(extension=kp)
    client = app.test_client()
    good = client.post(
        "/auth/login", json={"username": "frank", "password": "from the host app"}
    )
    bad = client.post("/auth/login", json={"username": "frank", "password": "no"})

    assert good.status_code == 200
    assert good.get_json()["username"] == "frank"
    assert bad.status_code == 401
    assert seen == [("frank", "from the host app"), ("frank", "no")]


@pytest.mark.parametrize("username", ["alice", "nobody"])
def test_the_first_check_in_a_process_costs_the_same_for_any_user(
    make_app: AppFactory, monkeypatch: pytest.MonkeyPatch, username: str
):
    """The dummy hash is made lazily: by the first check, known user or not."""
    app = make_app()
    kp: KPSession = app.extensions["kpsession"]
    with app.app_context():
        kp.create_user("alice", "correct horse battery")
    fresh = make_app()  # a new process's store: no dummy hash made yet
    hashes: list[str] = []
    verifications: list[str] = []
    original_hash, original_verify = PasswordHasher.hash, PasswordHasher.verify

    def counting_hash(self, password, *args, **kwargs):
        hashes.append(password)
        return original_hash(self, password, *args, **kwargs)

    def counting_verify(self, stored, password):
        verifications.append(stored)
        return original_verify(self, stored, password)

    monkeypatch.setattr(PasswordHasher, "hash", counting_hash)
    monkeypatch.setattr(PasswordHasher, "verify", counting_verify)
    response = fresh.test_client().post(
        "/auth/login", json={"username": username, "password": "wrong password"}
    )
    assert response.status_code == 401
    assert (len(hashes), len(verifications)) == (1, 1)
