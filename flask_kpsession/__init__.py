"""flask-kpsession: server-side login sessions for Flask, kept in a SQL database."""

from __future__ import annotations

from .config import DEFAULTS
from .errors import (
    ConfigurationError,
    DatabaseUnavailableError,
    DuplicateSessionError,
    InvalidAddressError,
    InvalidCredentialsError,
    KPSessionError,
    LoginThrottledError,
    NoSessionFoundError,
    UnknownUserError,
)
from .extension import KPSession
from .hook import current_session, login_required
from .record import UserSession

__all__ = [
    "DEFAULTS",
    "ConfigurationError",
    "DatabaseUnavailableError",
    "DuplicateSessionError",
    "InvalidAddressError",
    "InvalidCredentialsError",
    "KPSession",
    "KPSessionError",
    "LoginThrottledError",
    "NoSessionFoundError",
    "UnknownUserError",
    "UserSession",
    "current_session",
    "login_required",
]
