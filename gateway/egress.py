"""The egress proxy: which upstreams are reached through it, from the environment, as curl does.

``HTTPS_PROXY`` names the proxy for https upstreams, ``HTTP_PROXY`` the one for http upstreams,
``ALL_PROXY`` the one for either when its own is not set, and ``NO_PROXY`` the hosts reached
directly; a lowercase variable wins over its uppercase twin. The standard library reads
them (``urllib.request``), so the rules are the ones Python's own clients follow. They are read
once, when the upstream client is created: a process's environment does not change while it runs.

A proxy URL may carry ``user:password@``. Those credentials become the ``Proxy-Authorization``
value and are kept out of every repr, log line and error message.
"""

from __future__ import annotations

import base64
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from urllib.parse import unquote_to_bytes, urlsplit

#: ``NO_PROXY`` matching as urllib applies it: comma-separated hosts or domain suffixes, ``*`` for
#: all. Public since Python 2, though typeshed leaves it out.
_bypassed: Callable[[str, Mapping[str, str]], bool] = urllib.request.proxy_bypass_environment  # type: ignore[attr-defined]


@dataclass(frozen=True, slots=True)
class Proxy:
    """An HTTP forward proxy: where to connect, and what to authenticate with."""

    host: str
    port: int
    #: ``Basic …`` from the URL's ``user:password@``, or "" without. A secret: not in the repr.
    authorization: str = field(default="", repr=False)

    @classmethod
    def from_url(cls, url: str, variable: str) -> Proxy:
        """``variable`` names the setting in errors: the URL itself may hold a password."""
        try:
            # A bare ``host:port`` means an http:// proxy, as curl and requests read it.
            parts = urlsplit(url if "://" in url else f"http://{url}")
            port = parts.port or 80
        except ValueError:
            raise ValueError(f"{variable}: the egress proxy URL cannot be parsed") from None
        if parts.scheme != "http":
            raise ValueError(
                f"{variable}: the egress proxy must be an http:// URL, not {parts.scheme}:// "
                "(the gateway speaks plain HTTP to the proxy and TLS to the upstream through it)"
            )
        if not parts.hostname:
            raise ValueError(f"{variable}: the egress proxy URL has no host")
        authorization = ""
        if parts.username is not None:
            credentials = unquote_to_bytes(parts.username) + b":" + unquote_to_bytes(parts.password or "")
            authorization = "Basic " + base64.b64encode(credentials).decode("ascii")
        return cls(parts.hostname, port, authorization)


@dataclass(frozen=True, slots=True)
class EgressProxies:
    """The environment's proxy settings."""

    #: For https upstreams: ``HTTPS_PROXY``, else ``ALL_PROXY``.
    https: Proxy | None = None
    #: For http upstreams: ``HTTP_PROXY``, else ``ALL_PROXY``.
    http: Proxy | None = None
    #: ``NO_PROXY``: hosts and domain suffixes reached directly.
    no_proxy: str = ""

    @classmethod
    def from_environment(cls) -> EgressProxies:
        """Raises ``ValueError`` for a proxy URL the gateway cannot use (which is not ignored:
        traffic meant for the proxy must not go around it)."""
        settings = urllib.request.getproxies_environment()
        return cls(https=_proxy(settings, "https"), http=_proxy(settings, "http"), no_proxy=settings.get("no", ""))

    def proxy_for(self, host: str, tls: bool) -> Proxy | None:
        """The proxy that reaches ``host``, or None: directly."""
        proxy = self.https if tls else self.http
        if proxy is None or _bypassed(host, {"no": self.no_proxy}):
            return None
        return proxy

    def summary(self) -> dict[str, str]:
        """For the log: where each proxy is and what bypasses them, never the credentials; empty
        without a proxy."""
        summary = {
            f"{scheme}_proxy": host_port(proxy.host, proxy.port)
            for scheme, proxy in (("https", self.https), ("http", self.http))
            if proxy is not None
        }
        if summary and self.no_proxy:
            summary["no_proxy"] = self.no_proxy
        return summary


def host_port(host: str, port: int) -> str:
    """``host:port``, an IPv6 address in brackets."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _proxy(settings: Mapping[str, str], scheme: str) -> Proxy | None:
    """The proxy for ``scheme``'s upstreams: its own variable, else ``ALL_PROXY``."""
    for key in (scheme, "all"):
        if settings.get(key):
            return Proxy.from_url(settings[key], f"{key.upper()}_PROXY")
    return None
