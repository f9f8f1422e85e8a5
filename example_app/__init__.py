"""A small site built on flask-kpsession: register, log in, see the session, log out.

Run it from the project root with ``flask --app example_app run``, or in
production with ``gunicorn 'example_app:create_app()'``. The database is
``DATABASE_URL`` or ``SQLALCHEMY_DATABASE_URI`` from the environment, else an
SQLite file in the instance folder; the secret key is ``FLASK_SECRET_KEY``, else
one generated on first start and kept in the instance folder. Any other config
key comes from a ``FLASK_``-prefixed variable (``FLASK_KPSESSION_TIMEOUT=30``),
and ``FLASK_PROXY_HOPS=1`` trusts that many reverse proxies' forwarded headers.
"""

from __future__ import annotations

import os
import secrets
from typing import Any

from flask import Flask, render_template, request
from flask_wtf.csrf import CSRFError, CSRFProtect
from werkzeug.middleware.proxy_fix import ProxyFix

from flask_kpsession import KPSession
from flask_kpsession.views import blueprint as kpsession_blueprint

from .pages import pages

kp = KPSession()
csrf = CSRFProtect()


def _database_url() -> str | None:
    url = os.environ.get("DATABASE_URL") or os.environ.get("SQLALCHEMY_DATABASE_URI")
    if url and url.startswith("mysql://"):
        url = "mysql+pymysql://" + url.removeprefix("mysql://")
    return url or None


def _secret_key(instance_path: str) -> str:
    """Return the secret key: from the environment, else kept in the instance folder.

    Several workers may start at once on a fresh folder. The key is written to
    a file of this process's own and then linked into place, which succeeds
    for exactly one of them; every process then reads the one complete file.
    """
    from_env = os.environ.get("FLASK_SECRET_KEY")
    if from_env:
        return from_env
    path = os.path.join(instance_path, "secret_key")
    if not os.path.exists(path):
        draft = f"{path}.{os.getpid()}.{secrets.token_hex(4)}"
        fd = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="ascii") as created:
            created.write(secrets.token_urlsafe(48))
        try:
            os.link(draft, path)
        except FileExistsError:
            pass  # another process linked its key first: use that one
        finally:
            os.unlink(draft)
    with open(path, encoding="ascii") as stored:
        return stored.read().strip()


def create_app(test_config: dict[str, Any] | None = None) -> Flask:
    """Build the example app; ``test_config`` overrides everything else."""
    app = Flask(__name__, instance_relative_config=True)
    os.makedirs(app.instance_path, exist_ok=True)
    app.config["SECRET_KEY"] = _secret_key(app.instance_path)
    # Flask-WTF keeps the CSRF secret in Flask's own session cookie.
    app.config.update(SESSION_COOKIE_SAMESITE="Lax", SESSION_COOKIE_HTTPONLY=True)
    url = _database_url()
    if url:
        app.config["SQLALCHEMY_DATABASE_URI"] = url
    app.config.from_prefixed_env()
    if test_config:
        app.config.update(test_config)

    hops = int(app.config.get("PROXY_HOPS", 0))
    if hops:
        # Only behind that many proxies that set these headers: otherwise a
        # client could choose its own address and defeat the IP binding.
        app.wsgi_app = ProxyFix(  # type: ignore[method-assign]
            app.wsgi_app, x_for=hops, x_proto=hops, x_host=hops
        )

    kp.init_app(app)
    csrf.init_app(app)
    # The JSON API authenticates with bearer tokens or a SameSite cookie and
    # answers JSON; the HTML forms below carry CSRF tokens.
    csrf.exempt(kpsession_blueprint)
    app.register_blueprint(pages)
    app.register_error_handler(CSRFError, _csrf_failed)
    return app


def _csrf_failed(error: CSRFError) -> tuple[str, int]:
    """Explain a refused form in words instead of Flask-WTF's bare 400 page."""
    retry = request.path if request.path in ("/login", "/register") else "/"
    page = render_template("form_expired.html", retry=retry, reason=error.description)
    return page, 400
