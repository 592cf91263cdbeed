"""Key -> team. Keys are held only as SHA-256 digests and compared in constant time."""

from __future__ import annotations

import hashlib
import hmac

from aiohttp import web

from gateway.config import Config, Team
from gateway.errors import Unauthorized
from plugins.dialects.base import Dialect

_MISSING = {
    "openai": "You didn't provide an API key. Send it as 'Authorization: Bearer <key>'.",
    "azure": "Access denied due to missing subscription key. Send it in the 'api-key' header.",
    "foundry": "Access denied due to missing key. Send it in the 'api-key' or 'Authorization' header.",
}
_WRONG = "Incorrect API key provided."


def authenticate(request: web.Request, dialect: Dialect, config: Config) -> tuple[Team, str]:
    """The caller's team and a key id safe for logs (a digest prefix). Never echoes the key."""
    key = dialect.credential(request)
    if not key:
        raise Unauthorized(_MISSING[dialect.name])
    digest = hashlib.sha256(key.encode()).digest()
    # The lookup is by digest, so its timing says nothing about the key itself; the final
    # comparison is constant-time all the same.
    team = config.keys.get(digest)
    if team is None or not any(hmac.compare_digest(digest, known) for known in team.key_digests):
        raise Unauthorized(_WRONG)
    return team, digest.hex()[:12]
