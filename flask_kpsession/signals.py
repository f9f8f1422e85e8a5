"""Signals sent by flask-kpsession, for auditing and custom reactions.

Each is sent with the app as sender, after the change is committed. Connect with
``session_created.connect(receiver, app)``; nothing is sent when blinker has no
receivers, so unused signals cost nothing on the request path.
"""

from __future__ import annotations

from blinker import Namespace

_signals = Namespace()

#: A session was stored. Keyword: ``session``.
session_created = _signals.signal("kpsession.session-created")
#: A session's idle clock was refreshed. Keyword: ``session``.
session_refreshed = _signals.signal("kpsession.session-refreshed")
#: A session was deleted. Keywords: ``session`` (may lack the token) and
#: ``reason``: ``logout``, ``idle``, ``absolute``, ``revoked``, ``evicted`` or
#: ``password_change``.
session_removed = _signals.signal("kpsession.session-removed")
#: A live token was presented from an address it is not bound to. Keywords:
#: ``session`` (the stored one) and ``addr`` (the presenting address).
address_mismatch = _signals.signal("kpsession.address-mismatch")
#: A purge finished. Keyword: ``count``, the number of sessions deleted.
purge_finished = _signals.signal("kpsession.purge-finished")
