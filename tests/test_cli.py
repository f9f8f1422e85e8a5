"""``flask kpsession ...`` commands through Flask's CLI runner."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from flask import Flask

from flask_kpsession import KPSession, UserSession
from flask_kpsession.clock import utcnow
from flask_kpsession.scheduler import is_scheduled

from .conftest import FAST_PASSWORDS

ADDR = "203.0.113.7"


def test_create_user_from_stdin_then_log_in(app: Flask, kp: KPSession):
    result = app.test_cli_runner().invoke(
        args=["kpsession", "create-user", "carol", "--password-stdin"],
        input="a good long password\n",
    )
    assert result.exit_code == 0, result.output
    assert "Created user 'carol'" in result.output

    response = app.test_client().post(
        "/auth/login", json={"username": "carol", "password": "a good long password"}
    )
    assert response.status_code == 200


def test_create_user_with_the_prompt(app: Flask):
    result = app.test_cli_runner().invoke(
        args=["kpsession", "create-user", "dave"],
        input="prompted password\nprompted password\n",
    )
    assert result.exit_code == 0, result.output
    response = app.test_client().post(
        "/auth/login", json={"username": "dave", "password": "prompted password"}
    )
    assert response.status_code == 200


def test_create_user_refuses_a_taken_name(app: Flask, user):
    result = app.test_cli_runner().invoke(
        args=["kpsession", "create-user", "alice", "--password-stdin"],
        input="another password\n",
    )
    assert result.exit_code == 1
    assert "already exists" in result.output


def test_set_password(app: Flask, user):
    runner = app.test_cli_runner()
    result = runner.invoke(
        args=["kpsession", "set-password", "alice", "--password-stdin"],
        input="the new password\n",
    )
    assert result.exit_code == 0, result.output
    client = app.test_client()
    old = client.post("/auth/login", json={"username": "alice", "password": user[1]})
    new = client.post(
        "/auth/login", json={"username": "alice", "password": "the new password"}
    )
    assert (old.status_code, new.status_code) == (401, 200)

    missing = runner.invoke(
        args=["kpsession", "set-password", "nobody", "--password-stdin"], input="x" * 9
    )
    assert missing.exit_code == 1


def test_purge_command_removes_a_timed_out_session(app: Flask, kp: KPSession):
    with app.app_context():
        kp.add_session(
            UserSession(
                ADDR,
                "a" * 43,
                "alice",
                created_at=utcnow() - timedelta(hours=3),
                last_used_at=utcnow() - timedelta(hours=3),
            )
        )
        kp.generate_session(ADDR, "bob")

    result = app.test_cli_runner().invoke(args=["kpsession", "purge"])
    assert result.exit_code == 0, result.output
    assert result.output.strip() == "Deleted 1 timed-out session."
    with app.app_context():
        assert not kp.session_exists(ADDR, "a" * 43)
    assert not is_scheduled(app)  # a CLI command starts no purge job


def test_purge_command_with_a_timeout(app: Flask, kp: KPSession):
    with app.app_context():
        kp.generate_session(ADDR, "bob")
        kp.generate_session(ADDR, "eve")
    result = app.test_cli_runner().invoke(args=["kpsession", "purge", "--timeout", "0"])
    assert result.output.strip() == "Deleted 2 timed-out sessions."


@pytest.mark.parametrize(
    "args",
    [
        ["sessions"],
        ["sessions", "--user", "alice"],
        ["stats"],
        ["revoke", "some-session-id"],
        ["revoke-user", "alice"],
        ["purge"],
        ["create-user", "bob", "--password-stdin"],
        ["set-password", "bob", "--password-stdin"],
    ],
)
def test_every_command_reports_an_unreachable_database_in_one_line(
    tmp_path: Path, args: list[str]
):
    app = Flask("down", instance_path=str(tmp_path))
    app.config.update(
        SECRET_KEY="k" * 32,
        SQLALCHEMY_DATABASE_URI="mysql+pymysql://root@127.0.0.1:9/nowhere",
        **FAST_PASSWORDS,
    )
    KPSession(app)
    result = app.test_cli_runner().invoke(
        args=["kpsession", *args], input="a long enough password\n"
    )
    assert result.exit_code == 1
    assert result.output.startswith("Error: database unavailable: ")
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)


def test_sessions_prints_one_line_of_seven_columns_per_session(
    app: Flask, kp: KPSession
):
    with app.app_context():
        kp.generate_session(ADDR, "alice")
    client = app.test_client()
    with app.app_context():
        kp.create_user("bob", "a long enough password")
    client.post(
        "/auth/login",
        json={"username": "bob", "password": "a long enough password"},
        headers={"User-Agent": "Agent/1.0\tfake-column"},
    )

    result = app.test_cli_runner().invoke(args=["kpsession", "sessions"])
    lines = result.output.splitlines()
    assert len(lines) == 2
    assert all(len(line.split("\t")) == 7 for line in lines)
    assert "Agent/1.0\\tfake-column" in result.output
