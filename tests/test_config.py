"""Configuration: defaults in force, and one bad value per key refused clearly."""

from __future__ import annotations

import logging
from datetime import timedelta

import pytest
from flask import Flask

from flask_kpsession import DEFAULTS, ConfigurationError, KPSession, KPSessionError

from .conftest import FAST_PASSWORDS, AppFactory


def test_defaults_are_applied_to_app_config(app: Flask):
    overridden = {"KPSESSION_CLEANUP_ENABLED", *FAST_PASSWORDS}  # set by the suite
    for key, value in DEFAULTS.items():
        if key not in overridden:
            assert app.config[key] == value, key
    settings = app.extensions["kpsession"].settings(app)
    assert settings.idle_timeout == timedelta(minutes=120)
    assert settings.absolute_timeout == timedelta(minutes=1440)
    assert settings.cleanup_interval == timedelta(minutes=5)


BAD_VALUES = [
    ("KPSESSION_TIMEOUT", 0),
    ("KPSESSION_TIMEOUT", -5),
    ("KPSESSION_TIMEOUT", "120"),
    ("KPSESSION_TIMEOUT", True),
    ("KPSESSION_TIMEOUT", timedelta(0)),
    ("KPSESSION_ABSOLUTE_TIMEOUT", -1),
    ("KPSESSION_ABSOLUTE_TIMEOUT", 1.5),
    ("KPSESSION_ABSOLUTE_TIMEOUT", timedelta(days=1_000_000)),
    ("KPSESSION_TIMEOUT", 10**9),
    ("KPSESSION_LOGIN_TRUST_PERIOD", timedelta(days=100_000)),
    ("KPSESSION_CLEANUP_INTERVAL", 0),
    ("KPSESSION_CLEANUP_INTERVAL", timedelta(seconds=-1)),
    ("KPSESSION_CLEANUP_ENABLED", "yes"),
    ("KPSESSION_CLEANUP_VERBOSE", 1),
    ("KPSESSION_CLEANUP_BATCH_SIZE", 0),
    ("KPSESSION_CLEANUP_BATCH_SIZE", 10**9),
    ("KPSESSION_BIND_IP", "exact"),
    ("KPSESSION_BIND_IP", 1),
    ("KPSESSION_URL_PREFIX", "auth"),
    ("KPSESSION_URL_PREFIX", "/auth/"),
    ("KPSESSION_URL_PREFIX", None),
    ("KPSESSION_ROUTES_ENABLED", None),
    ("KPSESSION_HOOK_ENABLED", "false"),
    ("KPSESSION_COOKIE_NAME", ""),
    ("KPSESSION_COOKIE_NAME", "bad name"),
    ("KPSESSION_COOKIE_NAME", "__Host-kp"),
    ("KPSESSION_COOKIE_SECURE", "always"),
    ("KPSESSION_COOKIE_SAMESITE", "None"),
    ("KPSESSION_COOKIE_SAMESITE", 1),
    ("KPSESSION_COOKIE_HOST_PREFIX", "yes"),
    ("KPSESSION_REFRESH_THROTTLE", -1),
    ("KPSESSION_REFRESH_THROTTLE", "1m"),
    ("KPSESSION_VALIDATION_CACHE", timedelta(seconds=2)),
    ("KPSESSION_VALIDATION_CACHE", 1),
    ("KPSESSION_VALIDATION_CACHE", timedelta(seconds=-1)),
    ("KPSESSION_TOKEN_BYTES", 16),
    ("KPSESSION_TOKEN_BYTES", 500),
    ("KPSESSION_PASSWORD_TIME_COST", 1),
    ("KPSESSION_PASSWORD_MEMORY_COST", 8192),
    ("KPSESSION_PASSWORD_PARALLELISM", 0),
    ("KPSESSION_MAX_PASSWORD_LENGTH", 4),
    ("KPSESSION_CLEAR_SITE_DATA", '"cache"'),
    ("KPSESSION_CLEAR_SITE_DATA", ["cache", "everything"]),
    ("KPSESSION_LOGIN_THROTTLE", "on"),
    ("KPSESSION_LOGIN_PAIR_LIMIT", 0),
    ("KPSESSION_LOGIN_PAIR_LIMIT", 10.0),
    ("KPSESSION_LOGIN_PAIR_WINDOW", 0),
    ("KPSESSION_LOGIN_ADDRESS_LIMIT", -1),
    ("KPSESSION_LOGIN_ADDRESS_WINDOW", "5"),
    ("KPSESSION_LOGIN_USER_LIMIT", 10**7),
    ("KPSESSION_LOGIN_USER_WINDOW", timedelta(seconds=-5)),
    ("KPSESSION_LOGIN_TRUST_PERIOD", None),
    ("KPSESSION_CSRF_PROTECTION", 0),
    ("KPSESSION_CSRF_TRUSTED_ORIGINS", "https://app.example.com"),
    ("KPSESSION_CSRF_TRUSTED_ORIGINS", ["https://app.example.com/path"]),
    ("KPSESSION_CSRF_TRUSTED_ORIGINS", ["app.example.com"]),
    ("KPSESSION_CSRF_DOUBLE_SUBMIT", "yes"),
]


def test_every_key_has_a_bad_value_test():
    assert {key for key, _ in BAD_VALUES} == set(DEFAULTS)


@pytest.mark.parametrize(("key", "value"), BAD_VALUES)
def test_a_bad_value_is_refused_naming_key_value_and_what_is_accepted(
    make_app: AppFactory, key, value
):
    with pytest.raises(ConfigurationError) as caught:
        make_app(**{key: value})
    message = str(caught.value)
    assert key in message
    assert repr(value) in message
    assert "expected" in message
    assert isinstance(caught.value, KPSessionError)
    assert isinstance(caught.value, ValueError)


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("KPSESSION_TIMEOUT", timedelta(seconds=30)),
        ("KPSESSION_ABSOLUTE_TIMEOUT", timedelta(days=3653)),
        ("KPSESSION_REFRESH_THROTTLE", 0),
        ("KPSESSION_ABSOLUTE_TIMEOUT", None),
        ("KPSESSION_ABSOLUTE_TIMEOUT", 30),  # shorter than the idle timeout
        ("KPSESSION_URL_PREFIX", ""),
        ("KPSESSION_BIND_IP", "subnet"),
        ("KPSESSION_BIND_IP", False),
        ("KPSESSION_COOKIE_SAMESITE", "Strict"),
        ("KPSESSION_CLEAR_SITE_DATA", []),
        ("KPSESSION_REFRESH_THROTTLE", timedelta(0)),
        ("KPSESSION_VALIDATION_CACHE", timedelta(milliseconds=250)),
        ("KPSESSION_VALIDATION_CACHE", timedelta(seconds=1)),
        ("KPSESSION_VALIDATION_CACHE", timedelta(0)),
        ("KPSESSION_LOGIN_PAIR_LIMIT", 1),
        ("KPSESSION_LOGIN_USER_WINDOW", timedelta(seconds=30)),
        ("KPSESSION_CSRF_TRUSTED_ORIGINS", ["https://a.example.com:8443"]),
        ("KPSESSION_CSRF_TRUSTED_ORIGINS", ("http://[::1]:5000",)),
    ],
)
def test_unusual_but_valid_values_are_accepted(make_app: AppFactory, key, value):
    app = make_app(**{key: value})
    assert app.config[key] == value


def test_the_refresh_throttle_is_clamped_to_a_tenth_of_the_idle_timeout(
    make_app: AppFactory,
):
    app = make_app(KPSESSION_TIMEOUT=10, KPSESSION_REFRESH_THROTTLE=5)
    settings = app.extensions["kpsession"].settings(app)
    assert settings.refresh_throttle == timedelta(minutes=1)


def test_the_host_prefix_needs_a_secure_cookie(make_app: AppFactory):
    with pytest.raises(ConfigurationError, match="KPSESSION_COOKIE_SECURE"):
        make_app(KPSESSION_COOKIE_HOST_PREFIX=True)
    app = make_app(KPSESSION_COOKIE_HOST_PREFIX=True, KPSESSION_COOKIE_SECURE=True)
    assert app.extensions["kpsession"].settings(app).cookie_name == "__Host-kp_session"


def test_init_app_twice_is_refused(app: Flask):
    with pytest.raises(RuntimeError, match="already registered"):
        KPSession(app)
    with pytest.raises(RuntimeError, match="already registered"):
        app.extensions["kpsession"].init_app(app)


def test_the_extension_object_is_registered_itself(app: Flask, kp: KPSession):
    assert app.extensions["kpsession"] is kp
    assert not hasattr(kp, "app")


def test_routes_can_be_turned_off(make_app: AppFactory):
    app = make_app(KPSESSION_ROUTES_ENABLED=False)
    assert app.test_client().get("/auth/check").status_code == 404


def test_an_unknown_key_is_reported_with_the_likely_one(
    make_app: AppFactory, caplog: pytest.LogCaptureFixture
):
    caplog.set_level(logging.WARNING, logger="flask_kpsession")
    app = make_app(KPSESSION_TIMEOUTS=5, KPSESSION_ZZZ=1)
    assert app.extensions["kpsession"].settings(app).idle_timeout == timedelta(
        minutes=120
    )
    messages = [r.getMessage() for r in caplog.records if "unknown" in r.getMessage()]
    assert messages == [
        "unknown configuration key KPSESSION_TIMEOUTS is ignored "
        "(did you mean KPSESSION_TIMEOUT?)",
        "unknown configuration key KPSESSION_ZZZ is ignored",
    ]
