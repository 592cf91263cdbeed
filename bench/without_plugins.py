"""``gateway`` with some plugins left out: a plugin's cost is the difference it makes.

``BENCH_WITHOUT=ratelimit,access_log python -m bench profile --cpu --target gateway`` runs the
one-worker gateway target through this module (``bench/gateway.py`` switches on the variable).
Interleave it with a run without the variable; the difference in CPU microseconds per request is
what the plugins cost on the real request path, caches and all, which microbenchmarks of the
plugin alone understate by about half. Names are the plugins' ``name`` attributes: ``metrics``,
``ratelimit``, ``routing`` (its hooks; requests are still routed), ``access_log``.

Usage: python -m bench.without_plugins NAME[,NAME…] <gateway arguments>
"""

from __future__ import annotations

import sys
from typing import Any

import plugins


def main(argv: list[str]) -> int:
    names = set(filter(None, argv[0].split(",")))
    full = plugins.default_plugins

    def without(config: Any, runtime: Any) -> list[Any]:
        built = full(config, runtime)
        unknown = names - {plugin.name for plugin in built}
        if unknown:
            raise SystemExit(f"no such plugin: {', '.join(sorted(unknown))}")
        return [plugin for plugin in built if plugin.name not in names]

    plugins.default_plugins = without
    # Imported after the swap: gateway.server binds default_plugins when it is first imported.
    from gateway.cli import main as gateway_main

    return gateway_main(argv[1:])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
