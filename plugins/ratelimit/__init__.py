"""Per-team quota enforcement; see ``plugin.py`` and the algorithm in ``window.lua``."""

from plugins.ratelimit.plugin import RateLimitPlugin

__all__ = ["RateLimitPlugin"]
