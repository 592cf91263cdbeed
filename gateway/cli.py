"""``gateway run | check-config | simulate``."""

from __future__ import annotations

import argparse
import asyncio
import sys

from gateway import config as config_module
from gateway.logs import configure


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="gateway", description="LLM API gateway")
    commands = parser.add_subparsers(dest="command", required=True)

    run = commands.add_parser("run", help="serve the gateway")
    run.add_argument("--config", default="gateway.yaml", help="path to gateway.yaml")
    run.add_argument("--host", help="override server.host")
    run.add_argument("--port", type=int, help="override server.port")
    run.add_argument("--workers", help="override server.workers (a number or 'auto')")
    # Internal: how the supervisor (this pid) starts each of its workers (see gateway.supervisor).
    run.add_argument("--worker-of", type=int, metavar="PID", help=argparse.SUPPRESS)

    check = commands.add_parser("check-config", help="validate a config file and print a summary")
    check.add_argument("path")

    simulate = commands.add_parser("simulate", help="run the upstream simulator on its own")
    simulate.add_argument("--host", default="127.0.0.1")
    simulate.add_argument("--port", type=int, default=8081)
    simulate.add_argument("--latency-per-token", type=float, default=0.0, help="seconds between streamed tokens")

    args = parser.parse_args(argv)
    if args.command == "check-config":
        return _check_config(args.path)
    if args.command == "simulate":
        return _simulate(args.host, args.port, args.latency_per_token)
    return _run(args)


def _check_config(path: str) -> int:
    try:
        cfg = config_module.load(path)
    except config_module.ConfigError as exc:
        print(f"{len(exc.errors)} error(s):", file=sys.stderr)
        for error in exc.errors:
            print(f"  {error}", file=sys.stderr)
        return 1
    print(f"{path}: ok: {cfg.summary()}")
    return 0


def _run(args: argparse.Namespace) -> int:
    from gateway.egress import EgressProxies
    from gateway.reload import ConfigFile
    from gateway.server import run

    overrides = {}
    if args.workers is not None:
        overrides["workers"] = args.workers
    source = ConfigFile(args.config, overrides or None)
    try:
        cfg = source.load()
    except config_module.ConfigError as exc:
        for error in exc.errors:
            print(error, file=sys.stderr)
        return 1
    try:
        EgressProxies.from_environment()  # read again by the upstream client: a bad URL stops the start here
    except ValueError as exc:
        print(exc, file=sys.stderr)
        return 1
    configure(cfg.logging.level, cfg.logging.format)
    host = args.host or cfg.server.host
    port = args.port if args.port is not None else cfg.server.port
    return run(cfg, host, port, source, supervisor_pid=args.worker_of)


def _simulate(host: str, port: int, latency: float) -> int:
    from gateway.simulator import SimulatorConfig, run_simulator

    configure()
    try:
        asyncio.run(run_simulator(host, port, SimulatorConfig(latency_per_token_s=latency)))
    except KeyboardInterrupt:
        pass
    return 0
