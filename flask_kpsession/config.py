"""Configuration keys, their defaults, and the validation run once in ``init_app``.

All knobs live in ``app.config`` under the ``KPSESSION_`` prefix. They are read and
checked once, when the extension is registered, into a frozen :class:`Settings`;
the request path never looks at ``app.config`` again.
"""

from __future__ import annotations

import difflib
import logging
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from types import MappingProxyType
from typing import Any, Literal

from .errors import ConfigurationError

logger = logging.getLogger(__name__)

#: Every configuration key with its default. ``init_app`` applies these with
#: ``setdefault``, so ``app.config`` shows the values in force.
DEFAULTS: Mapping[str, Any] = MappingProxyType(
    {
        # Idle timeout: minutes (int) or a timedelta.
        "KPSESSION_TIMEOUT": 120,
        # Lifetime since login however active: minutes, a timedelta, or None.
        "KPSESSION_ABSOLUTE_TIMEOUT": 1440,
        # Time between purges of timed-out sessions: minutes or a timedelta.
        "KPSESSION_CLEANUP_INTERVAL": 5,
        # Run the purge job in each process that serves requests.
        "KPSESSION_CLEANUP_ENABLED": True,
        # Log every purge at INFO with its count.
        "KPSESSION_CLEANUP_VERBOSE": True,
        # Rows deleted per committed batch of the purge.
        "KPSESSION_CLEANUP_BATCH_SIZE": 2000,
        # True: exact address; "subnet": same IPv4 /24 or IPv6 /64; False: any.
        "KPSESSION_BIND_IP": True,
        # Where the login/logout/check blueprint is mounted ("" for the root).
        "KPSESSION_URL_PREFIX": "/auth",
        # Register the blueprint at all.
        "KPSESSION_ROUTES_ENABLED": True,
        # Validate the token in a before_request hook (else lazily, on first use).
        "KPSESSION_HOOK_ENABLED": True,
        # Name of the cookie that carries the token.
        "KPSESSION_COOKIE_NAME": "kp_session",
        # True: always mark the cookie Secure; False: only over HTTPS.
        "KPSESSION_COOKIE_SECURE": False,
        # SameSite attribute of the cookie: "Lax" or "Strict".
        "KPSESSION_COOKIE_SAMESITE": "Lax",
        # Prefix the cookie name with "__Host-" (needs KPSESSION_COOKIE_SECURE).
        "KPSESSION_COOKIE_HOST_PREFIX": False,
        # Skip the idle-clock write while the last refresh is younger than this;
        # capped at a tenth of the idle timeout.
        "KPSESSION_REFRESH_THROTTLE": timedelta(seconds=60),
        # Opt-in per-process cache of validated sessions: None (off) or a
        # timedelta of at most 1 s, the longest a revocation made elsewhere
        # may go unseen by this process.
        "KPSESSION_VALIDATION_CACHE": None,
        # Random bytes per token (at least 32: 256 bits).
        "KPSESSION_TOKEN_BYTES": 32,
        # Argon2id cost of the built-in users table (OWASP minimum: t=2, 19 MiB).
        "KPSESSION_PASSWORD_TIME_COST": 3,
        "KPSESSION_PASSWORD_MEMORY_COST": 65536,
        "KPSESSION_PASSWORD_PARALLELISM": 4,
        # Longest password accepted, in characters.
        "KPSESSION_MAX_PASSWORD_LENGTH": 1024,
        # Directives of the Clear-Site-Data header sent by /logout (empty: none).
        "KPSESSION_CLEAR_SITE_DATA": ("cache",),
        # Failed-login throttling, stored in the database (see throttle.py).
        "KPSESSION_LOGIN_THROTTLE": True,
        # Failures allowed per username and address within the window.
        "KPSESSION_LOGIN_PAIR_LIMIT": 10,
        "KPSESSION_LOGIN_PAIR_WINDOW": 5,
        # Failures allowed per address (IPv6: per /64), any username.
        "KPSESSION_LOGIN_ADDRESS_LIMIT": 100,
        "KPSESSION_LOGIN_ADDRESS_WINDOW": 5,
        # Failures allowed per username across addresses; addresses the user
        # logged in from within the trust period are exempt from this one.
        "KPSESSION_LOGIN_USER_LIMIT": 100,
        "KPSESSION_LOGIN_USER_WINDOW": 60,
        "KPSESSION_LOGIN_TRUST_PERIOD": timedelta(days=30),
        # Refuse cookie-authenticated unsafe requests that a browser marks as
        # coming from another site (Sec-Fetch-Site, else Origin against Host).
        "KPSESSION_CSRF_PROTECTION": True,
        # Origins ("https://host[:port]") whose requests count as same-site.
        "KPSESSION_CSRF_TRUSTED_ORIGINS": (),
        # Also require the X-CSRF-Token header (signed double-submit cookie).
        "KPSESSION_CSRF_DOUBLE_SUBMIT": False,
    }
)

#: The OWASP floor for argon2id: t=2 iterations with 19 MiB of memory.
MIN_TIME_COST = 2
MIN_MEMORY_COST = 19 * 1024
MAX_TOKEN_BYTES = 192
#: The longest validation cache lifetime accepted: the revocation lag it allows.
MAX_VALIDATION_CACHE = timedelta(seconds=1)
MAX_USERNAME_LENGTH = 255
CLEAR_SITE_DATA_DIRECTIVES = frozenset(
    {"cache", "cookies", "storage", "executionContexts", "*"}
)

BindPolicy = Literal[True, False, "subnet"]

#: Most failures a throttle limit may allow; more would be no throttle at all.
MAX_LOGIN_LIMIT = 1_000_000


@dataclass(frozen=True)
class ThrottleSettings:
    """The failed-login limits: each ``limit`` failures per ``window``."""

    enabled: bool
    pair_limit: int
    pair_window: timedelta
    address_limit: int
    address_window: timedelta
    user_limit: int
    user_window: timedelta
    trust_period: timedelta

    @property
    def longest_window(self) -> timedelta:
        """How long a failure can matter; older ones may be deleted."""
        return max(self.pair_window, self.address_window, self.user_window)


@dataclass(frozen=True)
class CsrfSettings:
    """How cookie-authenticated unsafe requests are checked for their origin."""

    enabled: bool
    trusted_origins: frozenset[str]
    double_submit: bool


@dataclass(frozen=True)
class Settings:
    """The validated configuration of one app, read once at ``init_app``."""

    idle_timeout: timedelta
    absolute_timeout: timedelta | None
    cleanup_interval: timedelta
    cleanup_enabled: bool
    cleanup_verbose: bool
    cleanup_batch_size: int
    bind_ip: BindPolicy
    url_prefix: str
    routes_enabled: bool
    hook_enabled: bool
    cookie_name: str
    cookie_secure: bool
    cookie_samesite: str
    refresh_throttle: timedelta
    validation_cache: timedelta | None
    token_bytes: int
    password_time_cost: int
    password_memory_cost: int
    password_parallelism: int
    max_password_length: int
    clear_site_data: tuple[str, ...]
    throttle: ThrottleSettings
    csrf: CsrfSettings


def _fail(key: str, value: object, accepted: str) -> ConfigurationError:
    return ConfigurationError(f"{key}={value!r} is not valid: expected {accepted}.")


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


#: The longest duration accepted: ten years. Beyond some bound, "now" minus the
#: duration leaves the range of datetime and every request would fail.
MAX_DURATION = timedelta(days=3653)
_MAX_MINUTES = int(MAX_DURATION.total_seconds() // 60)


def _duration(key: str, value: object, *, zero: bool = False) -> timedelta:
    sign = "zero or more" if zero else "a positive number of"
    accepted = (
        f"{sign} minutes (int) or a {'non-negative' if zero else 'positive'} "
        f"timedelta, at most {MAX_DURATION.days} days"
    )
    if _is_int(value):
        assert isinstance(value, int)
        if (value >= 0 if zero else value > 0) and value <= _MAX_MINUTES:
            return timedelta(minutes=value)
    elif isinstance(value, timedelta):
        if (value >= timedelta(0) if zero else value > timedelta(0)) and (
            value <= MAX_DURATION
        ):
            return value
    raise _fail(key, value, accepted)


def _optional_duration(key: str, value: object) -> timedelta | None:
    if value is None:
        return None
    try:
        return _duration(key, value)
    except ConfigurationError:
        raise _fail(
            key,
            value,
            "a positive number of minutes, a positive timedelta (at most "
            f"{MAX_DURATION.days} days), or None",
        ) from None


def _flag(key: str, value: object) -> bool:
    if isinstance(value, bool):
        return value
    raise _fail(key, value, "True or False")


def _int_in(key: str, value: object, low: int, high: int | None = None) -> int:
    if _is_int(value):
        assert isinstance(value, int)
        if value >= low and (high is None or value <= high):
            return value
    bound = f"from {low} to {high}" if high is not None else f"of at least {low}"
    raise _fail(key, value, f"a whole number {bound}")


def _bind_ip(key: str, value: object) -> BindPolicy:
    if value is True or value is False or value == "subnet":
        return value
    raise _fail(key, value, 'True, False or "subnet"')


_PREFIX = re.compile(r"(/[A-Za-z0-9._~!$&'()*+,;=:@%-]+)*")
_COOKIE_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")


def _url_prefix(key: str, value: object) -> str:
    if isinstance(value, str) and _PREFIX.fullmatch(value):
        return value
    raise _fail(key, value, 'a path starting with "/" and not ending with "/", or ""')


def _cookie_name(key: str, value: object) -> str:
    if isinstance(value, str) and _COOKIE_NAME.fullmatch(value):
        if not value.startswith(("__Host-", "__Secure-")):
            return value
    raise _fail(
        key,
        value,
        "a non-empty cookie token without a __Host-/__Secure- prefix "
        "(use KPSESSION_COOKIE_HOST_PREFIX for that)",
    )


def _samesite(key: str, value: object) -> str:
    if isinstance(value, str) and value.capitalize() in ("Lax", "Strict"):
        return value.capitalize()
    raise _fail(key, value, '"Lax" or "Strict"')


def _validation_cache(key: str, value: object) -> timedelta | None:
    if value is None:
        return None
    if isinstance(value, timedelta) and timedelta(0) <= value <= MAX_VALIDATION_CACHE:
        return value or None
    raise _fail(
        key, value, "None (off) or a timedelta from 0 (off) to 1 second at most"
    )


def _clear_site_data(key: str, value: object) -> tuple[str, ...]:
    if isinstance(value, (list, tuple)) and all(
        isinstance(item, str) and item in CLEAR_SITE_DATA_DIRECTIVES for item in value
    ):
        return tuple(value)
    raise _fail(
        key,
        value,
        "a list of Clear-Site-Data directives from "
        + ", ".join(sorted(CLEAR_SITE_DATA_DIRECTIVES)),
    )


_ORIGIN = re.compile(r"https?://([A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\])(:[0-9]{1,5})?")


def _origins(key: str, value: object) -> frozenset[str]:
    if isinstance(value, (list, tuple, set, frozenset)) and all(
        isinstance(item, str) and _ORIGIN.fullmatch(item) for item in value
    ):
        return frozenset(item.lower() for item in value)
    raise _fail(
        key,
        value,
        'a list of origins such as "https://app.example.com" or '
        '"https://example.com:8443" (scheme, host and optional port, no path)',
    )


def _limit(key: str, value: object) -> int:
    return _int_in(key, value, 1, MAX_LOGIN_LIMIT)


def load_throttle_settings(config: Mapping[str, Any]) -> ThrottleSettings:
    """Validate the ``KPSESSION_LOGIN_*`` keys into :class:`ThrottleSettings`."""
    return ThrottleSettings(
        enabled=_read(config, "KPSESSION_LOGIN_THROTTLE", _flag),
        pair_limit=_read(config, "KPSESSION_LOGIN_PAIR_LIMIT", _limit),
        pair_window=_read(config, "KPSESSION_LOGIN_PAIR_WINDOW", _duration),
        address_limit=_read(config, "KPSESSION_LOGIN_ADDRESS_LIMIT", _limit),
        address_window=_read(config, "KPSESSION_LOGIN_ADDRESS_WINDOW", _duration),
        user_limit=_read(config, "KPSESSION_LOGIN_USER_LIMIT", _limit),
        user_window=_read(config, "KPSESSION_LOGIN_USER_WINDOW", _duration),
        trust_period=_read(config, "KPSESSION_LOGIN_TRUST_PERIOD", _duration),
    )


def load_csrf_settings(config: Mapping[str, Any]) -> CsrfSettings:
    """Validate the ``KPSESSION_CSRF_*`` keys into :class:`CsrfSettings`."""
    return CsrfSettings(
        enabled=_read(config, "KPSESSION_CSRF_PROTECTION", _flag),
        trusted_origins=_read(config, "KPSESSION_CSRF_TRUSTED_ORIGINS", _origins),
        double_submit=_read(config, "KPSESSION_CSRF_DOUBLE_SUBMIT", _flag),
    )


def _read(config: Mapping[str, Any], key: str, check: Callable[..., Any]) -> Any:
    return check(key, config[key])


def _warn_about_unknown_keys(config: Mapping[str, Any]) -> None:
    """Log each ``KPSESSION_*`` key that no setting reads: most likely a typo."""
    for key in sorted(k for k in config if k.startswith("KPSESSION_")):
        if key in DEFAULTS:
            continue
        # Compare what follows the prefix, which every key shares.
        suffixes = {name.removeprefix("KPSESSION_"): name for name in DEFAULTS}
        close = difflib.get_close_matches(
            key.removeprefix("KPSESSION_"), suffixes, n=1, cutoff=0.75
        )
        logger.warning(
            "unknown configuration key %s is ignored%s",
            key,
            f" (did you mean {suffixes[close[0]]}?)" if close else "",
        )


def load_settings(config: Mapping[str, Any]) -> Settings:
    """Validate the ``KPSESSION_*`` keys of ``config`` into :class:`Settings`.

    :param config: the app's config, with :data:`DEFAULTS` already applied.
    :raises ConfigurationError: naming the first key whose value is not accepted.
    """
    _warn_about_unknown_keys(config)
    idle = _read(config, "KPSESSION_TIMEOUT", _duration)
    throttle = _duration(
        "KPSESSION_REFRESH_THROTTLE", config["KPSESSION_REFRESH_THROTTLE"], zero=True
    )
    if throttle > idle / 10:
        logger.info(
            "KPSESSION_REFRESH_THROTTLE %s is above a tenth of the idle timeout; "
            "using %s",
            throttle,
            idle / 10,
        )
        throttle = idle / 10

    host_prefix = _read(config, "KPSESSION_COOKIE_HOST_PREFIX", _flag)
    secure = _read(config, "KPSESSION_COOKIE_SECURE", _flag)
    if host_prefix and not secure:
        raise ConfigurationError(
            "KPSESSION_COOKIE_HOST_PREFIX=True is not valid with "
            "KPSESSION_COOKIE_SECURE=False: browsers accept a __Host- cookie "
            "only when it is Secure; set KPSESSION_COOKIE_SECURE=True."
        )
    cookie_name = _read(config, "KPSESSION_COOKIE_NAME", _cookie_name)

    return Settings(
        idle_timeout=idle,
        absolute_timeout=_read(
            config, "KPSESSION_ABSOLUTE_TIMEOUT", _optional_duration
        ),
        cleanup_interval=_read(config, "KPSESSION_CLEANUP_INTERVAL", _duration),
        cleanup_enabled=_read(config, "KPSESSION_CLEANUP_ENABLED", _flag),
        cleanup_verbose=_read(config, "KPSESSION_CLEANUP_VERBOSE", _flag),
        cleanup_batch_size=_int_in(
            "KPSESSION_CLEANUP_BATCH_SIZE",
            config["KPSESSION_CLEANUP_BATCH_SIZE"],
            1,
            50_000,
        ),
        bind_ip=_read(config, "KPSESSION_BIND_IP", _bind_ip),
        url_prefix=_read(config, "KPSESSION_URL_PREFIX", _url_prefix),
        routes_enabled=_read(config, "KPSESSION_ROUTES_ENABLED", _flag),
        hook_enabled=_read(config, "KPSESSION_HOOK_ENABLED", _flag),
        cookie_name=f"__Host-{cookie_name}" if host_prefix else cookie_name,
        cookie_secure=secure,
        cookie_samesite=_read(config, "KPSESSION_COOKIE_SAMESITE", _samesite),
        refresh_throttle=throttle,
        validation_cache=_read(config, "KPSESSION_VALIDATION_CACHE", _validation_cache),
        token_bytes=_int_in(
            "KPSESSION_TOKEN_BYTES", config["KPSESSION_TOKEN_BYTES"], 32, 192
        ),
        password_time_cost=_int_in(
            "KPSESSION_PASSWORD_TIME_COST",
            config["KPSESSION_PASSWORD_TIME_COST"],
            MIN_TIME_COST,
            100,
        ),
        password_memory_cost=_int_in(
            "KPSESSION_PASSWORD_MEMORY_COST",
            config["KPSESSION_PASSWORD_MEMORY_COST"],
            MIN_MEMORY_COST,
            4 * 1024 * 1024,
        ),
        password_parallelism=_int_in(
            "KPSESSION_PASSWORD_PARALLELISM",
            config["KPSESSION_PASSWORD_PARALLELISM"],
            1,
            64,
        ),
        max_password_length=_int_in(
            "KPSESSION_MAX_PASSWORD_LENGTH",
            config["KPSESSION_MAX_PASSWORD_LENGTH"],
            8,
            65536,
        ),
        clear_site_data=_read(config, "KPSESSION_CLEAR_SITE_DATA", _clear_site_data),
        throttle=load_throttle_settings(config),
        csrf=load_csrf_settings(config),
    )
