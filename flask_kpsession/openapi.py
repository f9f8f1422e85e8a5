"""The OpenAPI 3 description of the blueprint, shipped inside the package.

``openapi.json`` beside this module describes the routes relative to the URL
prefix; :func:`openapi_document` fills in the prefix and cookie name of one
deployment, for API gateways, client generators and schema-driven testers.
"""

from __future__ import annotations

import json
from importlib import resources
from typing import Any

from .config import Settings

#: The file name of the description inside the package.
RESOURCE = "openapi.json"


def openapi_document(settings: Settings | None = None) -> dict[str, Any]:
    """Return the OpenAPI 3 description of the routes as a fresh dict.

    :param settings: the app's settings (``kp.settings()``), to put its URL
        prefix and cookie name in; without them, the defaults (``/auth``,
        ``kp_session``).
    """
    text = resources.files(__package__).joinpath(RESOURCE).read_text("utf-8")
    document: dict[str, Any] = json.loads(text)
    if settings is not None:
        document["servers"] = [{"url": settings.url_prefix or "/"}]
        schemes = document["components"]["securitySchemes"]
        schemes["cookieAuth"]["name"] = settings.cookie_name
    return document
