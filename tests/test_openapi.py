"""The shipped OpenAPI description, and schemathesis against the live routes.

Schemathesis generates requests from the description (valid ones and broken
ones) and checks every answer against it: no 5xx, documented status codes,
headers and JSON bodies, invalid input refused. The example count per route is
bounded to keep the suite quick; set ``KPSESSION_FUZZ_EXAMPLES`` (say, 500)
to dig deeper locally.
"""

from __future__ import annotations

import os
from typing import Any

import schemathesis
from flask import Flask
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flask_kpsession import KPSession
from flask_kpsession.openapi import openapi_document

from .conftest import AppFactory

EXAMPLES = int(os.environ.get("KPSESSION_FUZZ_EXAMPLES", "30"))

# The description's own format for usernames: what Python's str.isprintable
# accepts, which no portable JSON Schema pattern can say.
schemathesis.openapi.format(
    "printable",
    st.text(
        st.characters(categories=["L", "M", "N", "P", "S"]) | st.just(" "),
        min_size=1,
        max_size=255,
    ),
)
PASSWORD = "correct horse battery"
CLIENT = {"REMOTE_ADDR": "127.0.0.1"}


def _routes(app: Flask) -> set[tuple[str, str]]:
    found = set()
    for rule in app.url_map.iter_rules():
        if not rule.endpoint.startswith("kpsession."):
            continue
        path = rule.rule.removeprefix("/auth").replace("<", "{").replace(">", "}")
        for method in rule.methods or ():
            if method not in ("HEAD", "OPTIONS"):
                found.add((method.lower(), path))
    return found


def test_the_description_covers_exactly_the_routes(app: Flask):
    document = openapi_document()
    described = {
        (method, path)
        for path, operations in document["paths"].items()
        for method in operations
    }
    assert described == _routes(app)
    assert document["openapi"].startswith("3.")


def test_the_description_follows_the_apps_prefix_and_cookie(make_app: AppFactory):
    app = make_app(KPSESSION_URL_PREFIX="/api/session", KPSESSION_COOKIE_NAME="sid")
    kp: KPSession = app.extensions["kpsession"]
    document = openapi_document(kp.settings(app))
    assert document["servers"] == [{"url": "/api/session"}]
    assert document["components"]["securitySchemes"]["cookieAuth"]["name"] == "sid"


def test_the_live_routes_answer_as_described(app: Flask, kp: KPSession):
    with app.app_context():
        kp.create_user("alice", PASSWORD)
    schema = schemathesis.openapi.from_dict(openapi_document(kp.settings(app)))
    schema.app = app  # the checks' own follow-up requests go to the app too
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) == 6
    counter = {"calls": 0}

    def credentials() -> dict[str, Any]:
        # A fresh session per request: /logout and /logout-all end the last one.
        with app.app_context():
            token = kp.generate_session("127.0.0.1", "alice").token
        counter["calls"] += 1
        if counter["calls"] % 2:
            return {"Authorization": f"Bearer {token}"}
        return {"Cookie": f"kp_session={token}"}

    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        def run(case: schemathesis.Case) -> None:
            response = case.call_and_validate(
                app=app, headers=credentials(), environ_base=CLIENT
            )
            assert response.status_code < 500

        run()
    assert counter["calls"] >= len(operations)


def test_the_description_ships_as_package_data():
    import configparser
    from importlib import resources
    from pathlib import Path

    setup = configparser.ConfigParser()
    setup.read(Path(__file__).parent.parent / "setup.cfg")
    shipped = setup["options.package_data"]["flask_kpsession"]
    assert "openapi.json" in [name.strip() for name in shipped.split(",")]
    resource = resources.files("flask_kpsession").joinpath("openapi.json")
    assert resource.is_file()
