"""Reading the login request body, with a clear 4xx for every malformed shape."""

from __future__ import annotations

import io
import json
from dataclasses import dataclass

from flask import Request
from werkzeug.exceptions import RequestEntityTooLarge
from werkzeug.formparser import FormDataParser

from .config import MAX_USERNAME_LENGTH

#: Larger bodies are refused before they are parsed.
MAX_BODY_BYTES = 64 * 1024

_FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")


@dataclass(frozen=True)
class BadPayload(Exception):
    """A request body that cannot be a login; carries the HTTP answer."""

    status: int
    code: str
    message: str


@dataclass(frozen=True)
class Credentials:
    """A username and password as the client sent them."""

    username: str
    password: str


def _is_json(mimetype: str) -> bool:
    return mimetype == "application/json" or mimetype.endswith("+json")


def _too_large() -> BadPayload:
    return BadPayload(413, "payload_too_large", "The request body is too large.")


def _body(request: Request) -> bytes:
    """Read the body, at most one byte past the limit, whatever its framing.

    A chunked body has no length to check up front, so the read itself is
    capped: an endless body is cut off there instead of held in memory.
    """
    if request.content_length is not None and request.content_length > MAX_BODY_BYTES:
        raise _too_large()
    host_limit = request.max_content_length
    if host_limit is None or host_limit > MAX_BODY_BYTES:
        request.max_content_length = MAX_BODY_BYTES + 1
    try:
        raw = request.get_data(cache=True)
    except RequestEntityTooLarge:
        raise _too_large() from None
    if len(raw) > MAX_BODY_BYTES:
        raise _too_large()
    return raw


def _form(request: Request) -> dict[str, object]:
    if "form" in request.__dict__:
        return dict(request.form.items())  # parsed already, by the host app
    raw = _body(request)
    parser = FormDataParser(max_form_memory_size=MAX_BODY_BYTES)
    try:
        _, form, _ = parser.parse(
            io.BytesIO(raw), request.mimetype, len(raw), request.mimetype_params
        )
    except RequestEntityTooLarge:
        raise _too_large() from None
    return dict(form.items())


def _fields(request: Request) -> dict[str, object]:
    mimetype = request.mimetype
    if _is_json(mimetype):
        return _json_object(_body(request))
    if mimetype in _FORM_TYPES:
        return _form(request)
    # The contract answers 400 for any malformed body; the code names the cause.
    raise BadPayload(
        400,
        "unsupported_media_type",
        "Send the credentials as application/json or as form fields.",
    )


def _json_object(raw: bytes) -> dict[str, object]:
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise BadPayload(
            400, "invalid_json", "The request body is not valid JSON."
        ) from None
    if not isinstance(body, dict):
        raise BadPayload(
            400, "invalid_request", "The request body must be a JSON object."
        )
    return body


def _text(fields: dict[str, object], name: str, limit: int) -> str:
    value = fields.get(name)
    if value is None or value == "":
        raise BadPayload(400, "invalid_request", f'The field "{name}" is required.')
    if not isinstance(value, str):
        raise BadPayload(
            400, "invalid_request", f'The field "{name}" must be a string.'
        )
    if len(value) > limit:
        raise BadPayload(
            400,
            "invalid_request",
            f'The field "{name}" must be at most {limit} characters.',
        )
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise BadPayload(
            400, "invalid_request", f'The field "{name}" is not valid Unicode.'
        ) from None
    return value


def read_credentials(request: Request, max_password_length: int) -> Credentials:
    """Return the username and password of a login request.

    :raises BadPayload: with 400 or 413 and the reason.
    """
    fields = _fields(request)
    username = _text(fields, "username", MAX_USERNAME_LENGTH)
    if not username.isprintable():
        raise BadPayload(
            400,
            "invalid_request",
            'The field "username" must not contain control characters.',
        )
    password = _text(fields, "password", max_password_length)
    return Credentials(username, password)


def read_keep_current(request: Request) -> bool:
    """Return ``keep_current`` of a ``/logout-all`` body (absent body: ``False``).

    :raises BadPayload: the body is there but is not a JSON object or form with a
        boolean ``keep_current``.
    """
    if request.content_length == 0 or not (request.mimetype or request.content_length):
        return False
    if _is_json(request.mimetype) and not _body(request).strip():
        return False
    fields = _fields(request)
    value = fields.get("keep_current", False)
    if isinstance(value, bool):
        return value
    if value in ("true", "1", "on"):
        return True
    if value in ("false", "0", "off", None):
        return False
    raise BadPayload(
        400, "invalid_request", 'The field "keep_current" must be true or false.'
    )
