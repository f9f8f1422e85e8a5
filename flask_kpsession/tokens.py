"""Session tokens: how they are made, recognised and hashed for storage.

A token is a bearer secret, so the database keeps only a keyed hash of it: a copy
of the table (a backup, a replica, an SQL injection elsewhere in the host app)
must not hand out live sessions.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Iterable, Mapping
from typing import Any

from .errors import ConfigurationError

#: URL-safe characters (RFC 3986's unreserved set, which holds the base64url
#: alphabet of generated tokens), 32 to 256 of them: the only shape accepted.
TOKEN_PATTERN = re.compile(r"[A-Za-z0-9._~-]{32,256}")

_KEY_LABEL = b"flask-kpsession token hash v1"
_FINGERPRINT_LABEL = b"flask-kpsession log fingerprint v1"


def new_token(nbytes: int) -> str:
    """Return a fresh URL-safe token carrying ``nbytes`` bytes of CSPRNG output."""
    return secrets.token_urlsafe(nbytes)


def new_public_id() -> str:
    """Return a random public session id: unrelated to the token, 128 bits."""
    return secrets.token_urlsafe(16)


_PUBLIC_ID_PATTERN = re.compile(r"[A-Za-z0-9_-]{1,32}")


def is_public_id(value: object) -> bool:
    """Tell whether ``value`` can be a public session id at all.

    Checked before any query: on MariaDB the id column is ASCII, and comparing
    it with other characters is an error, not a miss.
    """
    return isinstance(value, str) and _PUBLIC_ID_PATTERN.fullmatch(value) is not None


def is_well_formed(token: object) -> bool:
    """Tell whether ``token`` has the only shape a session token can have.

    Checked before any query, so that junk never reaches the database.
    """
    return isinstance(token, str) and TOKEN_PATTERN.fullmatch(token) is not None


def secret_keys(config: Mapping[str, Any]) -> list[str | bytes]:
    """Return ``SECRET_KEY`` then ``SECRET_KEY_FALLBACKS`` from the app config.

    An unset or empty ``SECRET_KEY`` yields an empty list (plain SHA-256
    digests). Read once, at ``init_app``: a key set later is not used.

    :raises ConfigurationError: a key is neither text nor bytes, or the
        fallbacks are not a list of them.
    """
    key = config.get("SECRET_KEY")
    if key is not None and not isinstance(key, (str, bytes)):
        raise ConfigurationError(
            f"SECRET_KEY={type(key).__name__} value is not valid: expected "
            "a str or bytes (or None, for unkeyed token hashes)."
        )
    fallbacks = config.get("SECRET_KEY_FALLBACKS") or []
    if not isinstance(fallbacks, (list, tuple)) or not all(
        isinstance(item, (str, bytes)) for item in fallbacks
    ):
        raise ConfigurationError(
            "SECRET_KEY_FALLBACKS is not valid: expected a list of str or bytes "
            "(older keys, newest first)."
        )
    if not key:
        return []
    return [key, *(item for item in fallbacks if item)]


def _as_bytes(secret: str | bytes) -> bytes:
    return secret.encode("utf-8") if isinstance(secret, str) else secret


class TokenHasher:
    """Turns tokens into the digests stored in ``kp_sessions.token_hash``.

    With a secret key the digest is HMAC-SHA256 under a key derived from it; the
    fallback keys (Flask's ``SECRET_KEY_FALLBACKS``) still find sessions stored
    before a key rotation. Without any key it is plain SHA-256.
    """

    def __init__(self, secret_keys: Iterable[str | bytes | None]) -> None:
        keys = [_as_bytes(key) for key in secret_keys if key]
        self._keys = [
            hmac.new(key, _KEY_LABEL, hashlib.sha256).digest() for key in keys
        ]
        fingerprint_root = keys[0] if keys else b""
        self._fingerprint_key = hmac.new(
            fingerprint_root, _FINGERPRINT_LABEL, hashlib.sha256
        ).digest()

    @property
    def keyed(self) -> bool:
        """Whether digests are keyed (a secret key was configured)."""
        return bool(self._keys)

    def digest(self, token: str) -> bytes:
        """Return the digest under which a new session with ``token`` is stored."""
        data = token.encode("ascii")
        if not self._keys:
            return hashlib.sha256(data).digest()
        return hmac.new(self._keys[0], data, hashlib.sha256).digest()

    def candidates(self, token: str) -> list[bytes]:
        """Return every digest ``token`` may be stored under, the current first."""
        data = token.encode("ascii")
        if not self._keys:
            return [hashlib.sha256(data).digest()]
        return [hmac.new(key, data, hashlib.sha256).digest() for key in self._keys]

    def fingerprint(self, token: str) -> str:
        """Return a short keyed tag for logs: enough to correlate, useless to replay."""
        data = token.encode("utf-8", "replace")
        return hmac.new(self._fingerprint_key, data, hashlib.sha256).hexdigest()[:10]
