"""Exceptions raised by flask-kpsession.

Every error derives from :class:`KPSessionError`, so a host app can catch the whole
family in one place; the narrow subclasses exist so that callers can react to the
one case they care about.
"""

from __future__ import annotations


class KPSessionError(Exception):
    """Base class of every error raised by the extension."""


class NoSessionFoundError(KPSessionError):
    """The token names no live session for this address.

    Raised alike for an unknown token, a session bound to another address and a
    timed-out session, so that callers cannot tell the cases apart by accident.
    """


class DuplicateSessionError(KPSessionError):
    """A session with that token is already stored."""


class ConfigurationError(KPSessionError, ValueError):
    """A ``KPSESSION_*`` configuration value is of the wrong type or out of range."""


class InvalidCredentialsError(KPSessionError):
    """The username and password do not match a known user.

    The message is deliberately the same whether the user exists or not.
    """


class InvalidAddressError(KPSessionError, ValueError):
    """The request's client address is not an IP address, so no session can be bound.

    Seen when a server on a Unix socket passes no address, or when a proxy
    header read by a misconfigured ``ProxyFix`` carries junk.
    """


class DatabaseUnavailableError(KPSessionError):
    """The session database could not be reached.

    The HTTP layer turns it into a 503 answer: an outage must never look like a
    logout to the client.
    """


class UnknownUserError(KPSessionError, LookupError):
    """No user of the built-in users table has that name."""


class LoginThrottledError(InvalidCredentialsError):
    """Too many failed logins: this attempt was refused without checking it.

    A subclass of :class:`InvalidCredentialsError`, so a login view that only
    knows that one still refuses the attempt; views that know this one answer
    429 with ``Retry-After``.

    :param retry_after: whole seconds until an attempt may be checked again.
    """

    def __init__(self, retry_after: int) -> None:
        super().__init__("too many failed logins; try again later")
        self.retry_after = retry_after
