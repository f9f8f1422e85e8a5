"""Property-based tests (hypothesis): the token parser, the login body parser and
the config validator, over inputs nobody thought to write down.

Example counts are bounded so that the whole file stays within a few seconds.
"""

from __future__ import annotations

import json
import re
import string
from datetime import timedelta
from typing import Any

import pytest
from flask import Flask
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flask_kpsession import DEFAULTS, ConfigurationError
from flask_kpsession.config import (
    MAX_DURATION,
    MAX_USERNAME_LENGTH,
    Settings,
    load_settings,
)
from flask_kpsession.payloads import BadPayload, Credentials, read_credentials
from flask_kpsession.throttle import address_key
from flask_kpsession.tokens import TokenHasher, is_well_formed, new_token
from flask_kpsession.transport import read_token

from .conftest import AppFactory

FAST = settings(max_examples=150, deadline=None)
SHAPE = re.compile(r"[A-Za-z0-9._~-]{32,256}")
ALPHABET = string.ascii_letters + string.digits + "-_.~"
BASE_SETTINGS = load_settings(dict(DEFAULTS))

#: A bare app: the parsers need a request, not a database.
parser_app = Flask("properties")


# -- the token parser ----------------------------------------------------------------


@FAST
@given(st.text(max_size=300) | st.text(ALPHABET, min_size=28, max_size=260))
def test_a_token_is_accepted_exactly_when_it_has_the_one_shape(candidate: str):
    assert is_well_formed(candidate) == bool(SHAPE.fullmatch(candidate))


@FAST
@given(st.integers(min_value=32, max_value=192))
def test_every_generated_token_has_the_shape_and_its_entropy(nbytes: int):
    token = new_token(nbytes)
    assert is_well_formed(token)
    assert len(token) >= (nbytes * 4 + 2) // 3


@FAST
@given(st.one_of(st.none(), st.integers(), st.binary(), st.lists(st.text())))
def test_non_text_is_never_a_token(candidate: object):
    assert not is_well_formed(candidate)


@FAST
@given(
    header=st.one_of(st.none(), st.text(string.printable, max_size=400)),
    cookie=st.one_of(st.none(), st.text(ALPHABET + " ;=,", max_size=300)),
)
def test_reading_the_token_never_fails_and_prefers_bearer(
    header: str | None, cookie: str | None
):
    headers = {}
    if header is not None:
        headers["Authorization"] = header.replace("\n", " ").replace("\r", " ")
    if cookie:
        headers["Cookie"] = f"kp_session={cookie}"
    with parser_app.test_request_context("/", headers=headers) as context:
        token = read_token(context.request, BASE_SETTINGS)

    if token is not None:
        assert token == token.strip() and token
    scheme = (headers.get("Authorization") or "").partition(" ")
    if scheme[0].lower() == "bearer" and scheme[2].strip():
        assert token == scheme[2].strip()


@FAST
@given(st.text(max_size=300))
def test_hashing_any_well_formed_token_is_stable_and_fixed_size(candidate: str):
    hasher = TokenHasher(["a secret key", "an older key"])
    if not is_well_formed(candidate):
        return
    digest = hasher.digest(candidate)
    assert len(digest) == 32
    assert hasher.candidates(candidate)[0] == digest
    assert len(hasher.fingerprint(candidate)) == 10


# -- the login body parser -----------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=40),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=12,
)
login_objects = st.fixed_dictionaries(
    {},
    optional={
        "username": json_values | st.text(max_size=300),
        "password": json_values | st.text(max_size=1100),
    },
)
bodies = st.one_of(
    st.tuples(st.just("application/json"), login_objects.map(json.dumps)),
    st.tuples(st.just("application/json"), json_values.map(json.dumps)),
    st.tuples(
        st.sampled_from(
            [
                "application/json",
                "application/x-www-form-urlencoded",
                "multipart/form-data; boundary=x",
                "text/plain",
                "application/vnd.api+json",
                "",
            ]
        ),
        st.binary(max_size=300),
    ),
)


def _check_credentials(result: Credentials) -> None:
    assert isinstance(result.username, str) and isinstance(result.password, str)
    assert 0 < len(result.username) <= MAX_USERNAME_LENGTH
    assert 0 < len(result.password) <= 1024
    assert result.username.isprintable()


@settings(max_examples=250, deadline=None)
@given(bodies)
def test_the_login_parser_returns_credentials_or_a_4xx(body: tuple[str, Any]):
    content_type, data = body
    with parser_app.test_request_context(
        "/auth/login", method="POST", data=data, content_type=content_type or None
    ) as context:
        try:
            result = read_credentials(context.request, 1024)
        except BadPayload as refusal:
            assert refusal.status in (400, 413)
            assert refusal.code and refusal.message
            return
    _check_credentials(result)


@FAST
@given(
    username=st.text(min_size=1, max_size=MAX_USERNAME_LENGTH).filter(str.isprintable),
    password=st.text(min_size=1, max_size=1024),
)
def test_every_acceptable_pair_comes_back_unchanged(username: str, password: str):
    data = json.dumps({"username": username, "password": password})
    with parser_app.test_request_context(
        "/auth/login", method="POST", data=data, content_type="application/json"
    ) as context:
        result = read_credentials(context.request, 1024)
    assert result == Credentials(username, password)


# -- the config validator ------------------------------------------------------------

any_value = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**9), max_value=10**9),
    st.floats(allow_nan=True),
    st.text(max_size=30),
    st.timedeltas(min_value=timedelta(days=-3), max_value=timedelta(days=400)),
    st.lists(st.text(max_size=30), max_size=3),
    st.tuples(st.sampled_from(["cache", "cookies", "https://a.example", "x"])),
)


@settings(max_examples=400, deadline=None)
@given(key=st.sampled_from(sorted(DEFAULTS)), value=any_value)
def test_the_validator_accepts_or_names_the_key(key: str, value: object):
    config = {**DEFAULTS, key: value}
    try:
        result = load_settings(config)
    except ConfigurationError as error:
        message = str(error)
        assert key in message
        assert "expected" in message or "is not valid" in message
        return
    assert isinstance(result, Settings)


@FAST
@given(
    pair=st.integers(min_value=1, max_value=10**6),
    minutes=st.integers(min_value=1, max_value=10**5),
    seconds=st.timedeltas(min_value=timedelta(microseconds=1), max_value=MAX_DURATION),
)
def test_valid_throttle_limits_are_taken_as_given(
    pair: int, minutes: int, seconds: timedelta
):
    result = load_settings(
        {
            **DEFAULTS,
            "KPSESSION_LOGIN_PAIR_LIMIT": pair,
            "KPSESSION_LOGIN_USER_WINDOW": minutes,
            "KPSESSION_LOGIN_PAIR_WINDOW": seconds,
        }
    )
    assert result.throttle.pair_limit == pair
    assert result.throttle.user_window == timedelta(minutes=minutes)
    assert result.throttle.pair_window == seconds


@FAST
@given(st.text(max_size=60) | st.ip_addresses().map(str))
def test_every_address_has_a_key_that_fits_its_column(addr: str):
    key = address_key(addr)
    assert 0 < len(key) <= 45
    assert key.isascii()


# -- the same parsers behind the live routes -----------------------------------------


@pytest.mark.parametrize("route", ["/auth/check", "/auth/logout"])
def test_hostile_credentials_on_the_live_routes_never_give_a_5xx(
    make_app: AppFactory, route: str
):
    app = make_app()
    client = app.test_client(use_cookies=False)

    @settings(
        max_examples=25,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture],
    )
    @given(
        header=st.text(string.printable.strip() + " ", max_size=300),
        cookie=st.text(ALPHABET + "%=.", max_size=300),
    )
    def run(header: str, cookie: str) -> None:
        headers = {"Authorization": header, "Cookie": f"kp_session={cookie}"}
        method = client.get if route.endswith("check") else client.post
        response = method(route, headers=headers)
        assert response.status_code in (200, 401)
        assert response.is_json
        if response.status_code == 401:
            assert response.get_json()["error"] == "unauthorized"

    run()
