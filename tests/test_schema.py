"""Tables, their creation, and which SQLAlchemy instance holds them."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from flask import Flask
from flask_sqlalchemy import SQLAlchemy
from sqlalchemy import inspect, text

from flask_kpsession import KPSession

from .conftest import (
    FAST_PASSWORDS,
    MYSQL_DATABASE,
    AppFactory,
    Backend,
    mysql_connect,
    mysql_url_for,
)

RACE_SCRIPT = textwrap.dedent(
    """
    import sys, time
    from flask import Flask
    from flask_kpsession import KPSession
    start = float(sys.argv[2])
    while time.time() < start:
        time.sleep(0.001)
    app = Flask("race", instance_path=sys.argv[3])
    app.config.update(SECRET_KEY="k" * 32, SQLALCHEMY_DATABASE_URI=sys.argv[1])
    kp = KPSession(app)
    with app.app_context():
        kp.generate_session("127.0.0.1", "racer")
        print("ok")
    """
)


@pytest.fixture
def empty_database(backend: Backend, tmp_path: Path):
    """A database with no tables at all, on the test's backend."""
    if not backend.is_mysql:
        yield f"sqlite:///{tmp_path / 'race.sqlite3'}"
        return
    race = f"{MYSQL_DATABASE}_race"
    with mysql_connect() as conn, conn.cursor() as cursor:
        cursor.execute(f"DROP DATABASE IF EXISTS `{race}`")
        cursor.execute(f"CREATE DATABASE `{race}` CHARACTER SET utf8mb4")
    yield mysql_url_for(race)
    with mysql_connect() as conn, conn.cursor() as cursor:
        cursor.execute(f"DROP DATABASE IF EXISTS `{race}`")


def test_several_workers_creating_the_tables_at_once(
    empty_database: str, tmp_path: Path
):
    import time

    start = time.time() + 1.5
    workers = [
        subprocess.Popen(
            [
                sys.executable,
                "-c",
                RACE_SCRIPT,
                empty_database,
                str(start),
                str(tmp_path),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(6)
    ]
    results = [worker.communicate(timeout=60) for worker in workers]

    for (out, err), worker in zip(results, workers, strict=True):
        assert worker.returncode == 0, err
        assert out.strip() == "ok"


def test_tables_and_indexes_exist(app: Flask, kp: KPSession):
    with app.app_context():
        inspector = inspect(kp.db().engine)
        assert {"kp_sessions", "kp_users"} <= set(inspector.get_table_names())
        assert inspector.get_pk_constraint("kp_sessions")["constrained_columns"] == [
            "token_hash"
        ]
        indexed = {
            tuple(index["column_names"])
            for index in inspector.get_indexes("kp_sessions")
        }
        assert ("last_used_at",) in indexed
        assert ("created_at",) in indexed
        columns = {c["name"]: c for c in inspector.get_columns("kp_sessions")}
        for name in ("uname", "addr", "created_at", "last_used_at", "public_id"):
            assert columns[name]["nullable"] is False, name


@pytest.mark.parametrize("backend", ["mariadb"], indirect=True)
def test_mariadb_columns_are_exact_and_keep_microseconds(backend: Backend, app: Flask):
    with mysql_connect(MYSQL_DATABASE) as conn, conn.cursor() as cursor:
        cursor.execute(
            "SELECT column_name, column_type, collation_name "
            "FROM information_schema.columns "
            "WHERE table_schema = %s AND table_name = 'kp_sessions'",
            (MYSQL_DATABASE,),
        )
        columns = {
            name: (kind, collation) for name, kind, collation in cursor.fetchall()
        }
    assert columns["uname"] == ("varchar(255)", "utf8mb4_nopad_bin")
    assert columns["addr"][0] == "varchar(45)"
    assert columns["created_at"][0] == "datetime(6)"
    assert columns["last_used_at"][0] == "datetime(6)"
    assert columns["token_hash"][0] == "binary(32)"


def test_no_pooled_connection_survives_start_up(app: Flask, kp: KPSession):
    with app.app_context():
        assert kp.db().engine.pool.checkedin() == 0


def test_an_unreachable_database_does_not_stop_the_app_from_starting(
    tmp_path: Path,
):
    app = Flask("down", instance_path=str(tmp_path))
    app.config.update(
        SECRET_KEY="k" * 32,
        SQLALCHEMY_DATABASE_URI="mysql+pymysql://root@127.0.0.1:9/nowhere",
        KPSESSION_CLEANUP_ENABLED=False,
        **FAST_PASSWORDS,
    )
    KPSession(app)
    response = app.test_client().post(
        "/auth/login", json={"username": "a", "password": "b"}
    )
    assert response.status_code == 503
    assert response.get_json()["error"] == "unavailable"
    assert app.test_client().get("/auth/check").status_code == 401


def test_without_a_database_uri_an_sqlite_file_in_the_instance_folder(tmp_path: Path):
    app = Flask("embedded", instance_path=str(tmp_path / "instance"))
    app.config.update(SECRET_KEY="k" * 32, KPSESSION_CLEANUP_ENABLED=False)
    kp = KPSession(app)

    assert isinstance(app.extensions["sqlalchemy"], SQLAlchemy)
    assert kp.db(app) is app.extensions["sqlalchemy"]
    assert "kp_sessions" in kp.db(app).metadata.tables
    assert (tmp_path / "instance" / "kpsession.sqlite3").exists()
    with app.app_context():
        assert kp.generate_session("127.0.0.1", "alice").uname == "alice"
        kp.db(app).engine.dispose()


def test_the_apps_own_sqlalchemy_instance_is_used(make_app: AppFactory, backend):
    db = SQLAlchemy()
    app = Flask("host", instance_path="/nonexistent")
    app.config.update(
        SECRET_KEY="k" * 32,
        SQLALCHEMY_DATABASE_URI=backend.url,
        KPSESSION_CLEANUP_ENABLED=False,
    )
    db.init_app(app)
    kp = KPSession(app)

    assert kp.db(app) is db
    assert "kp_sessions" in db.metadata.tables
    with app.app_context():
        db.engine.dispose()


def test_a_db_passed_in_is_registered_on_the_app(backend, tmp_path: Path):
    db = SQLAlchemy()
    app = Flask("passed", instance_path=str(tmp_path))
    app.config.update(
        SECRET_KEY="k" * 32,
        SQLALCHEMY_DATABASE_URI=backend.url,
        KPSESSION_CLEANUP_ENABLED=False,
    )
    kp = KPSession(app, db=db)

    assert app.extensions["sqlalchemy"] is db
    assert "kp_users" in db.metadata.tables
    with app.app_context():
        db.create_all()  # the host's own create_all sees the tables too
        assert kp.generate_session("127.0.0.1", "alice").uname == "alice"
        db.engine.dispose()


@pytest.mark.parametrize("uri", ["sqlite://", "sqlite:///:memory:"])
def test_an_in_memory_sqlite_database_keeps_its_tables(tmp_path: Path, uri: str):
    """Its one pooled connection is the database: start-up must not dispose of it."""
    db = SQLAlchemy()
    app = Flask("memory", instance_path=str(tmp_path))
    app.config.update(
        SECRET_KEY="k" * 32,
        SQLALCHEMY_DATABASE_URI=uri,
        KPSESSION_CLEANUP_ENABLED=False,
        **FAST_PASSWORDS,
    )
    db.init_app(app)
    with app.app_context():
        db.session.execute(text("CREATE TABLE notes (body TEXT)"))
        db.session.execute(text("INSERT INTO notes VALUES ('kept')"))
        db.session.commit()
    kp = KPSession(app)

    with app.app_context():
        assert db.session.execute(text("SELECT body FROM notes")).scalar() == "kept"
        db.session.remove()
        made = kp.generate_session("127.0.0.1", "alice")
        assert kp.get_session("127.0.0.1", made.token).uname == "alice"
    check = app.test_client().get(
        "/auth/check", headers={"Authorization": f"Bearer {made.token}"}
    )
    assert check.status_code == 200
