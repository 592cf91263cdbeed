"""python -m bench [run] | memory | profile  (see BENCHMARKS.md; `make bench` runs the first)."""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import sys

from bench import machine, memory, profile, report, runner
from bench.settings import Settings, parse_duration, target_names


def _need_tools() -> None:
    missing = [t for t in ("wrk", "nginx") if not (shutil.which(t) or os.path.exists(f"/usr/sbin/{t}"))]
    if missing:
        sys.exit(f"missing {', '.join(missing)}: install with `sudo apt-get install -y wrk nginx-light` "
                 "(or run `make bench` as root, which installs them)")


def cmd_run(args: argparse.Namespace) -> int:
    settings = Settings.from_env(quick=True if args.quick else None)
    names = target_names(args.targets, True if args.peers else None)
    info = machine.describe()
    print("machine: " + "; ".join(f"{k}: {v}" for k, v in info.items()), flush=True)
    print(f"targets: {', '.join(names)}; settings: {settings.as_dict()}", flush=True)
    rows = runner.run(names, settings)
    env = [f"{k}={shlex.quote(v)}" for k, v in sorted(os.environ.items())
           if k.startswith("BENCH_") or k == "PEERS"]
    command = " ".join([*env, "python -m bench", shlex.join(sys.argv[1:])]).strip()
    text = report.markdown(rows, info, settings.as_dict(), command)
    md, js = report.write("latest", text, {"machine": info, "settings": settings.as_dict(),
                                           "summary": report.summarise(rows), "runs": rows})
    print("\n" + text + f"\nwritten: {md} and {js}")
    return 0 if all(r["status"] == "ok" for r in rows if r["name"] in ("direct", "floor")) else 1


def cmd_memory(args: argparse.Namespace) -> int:
    names = [n.strip() for n in args.targets.split(",") if n.strip()]
    steps = sorted(int(n) for n in args.streams.split(","))
    soak_s = parse_duration(args.soak) if args.soak not in ("", "0") else 0
    idle = [memory.guarded(memory.idle_streams, n, steps) for n in names] if not args.soak_only else []
    soaks = [memory.guarded(memory.soak, n, soak_s, args.interval, Settings.from_env()) for n in names
             if soak_s]
    info = machine.describe()
    text = memory.markdown(idle, soaks, info)
    md, js = report.write("memory", text, {"machine": info, "idle_streams": idle, "soak": soaks})
    print("\n" + text + f"\nwritten: {md} and {js}")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    sub = parser.add_subparsers(dest="command")
    run = sub.add_parser("run", help="throughput, latency and TTFB of every target (the default)")
    mem = sub.add_parser("memory", help="RSS with idle streams, and a soak with BENCH_SOAK=seconds")
    for p, default in ((parser, None), (run, argparse.SUPPRESS)):  # flags work before or after `run`
        p.add_argument("--targets", default=default,
                       help="comma list or 'all' (env BENCH_TARGETS); direct and floor always run")
        p.add_argument("--quick", action="store_true", default=default or False,
                       help="2 s runs for a smoke test (env BENCH_QUICK=1)")
        p.add_argument("--peers", action="store_true", default=default or False,
                       help="add LiteLLM proxy (env PEERS=1)")
    prof = sub.add_parser("profile", help="py-spy samples of one target under wrk load")
    prof.add_argument("--target", default="gateway")
    prof.add_argument("--seconds", type=int, default=15)
    prof.add_argument("--stream", action="store_true", help="load with streams instead of JSON")
    prof.add_argument("--top", type=int, default=40)
    prof.add_argument("--cpu", action="store_true", help="no sampling: CPU microseconds per request only")
    prof.add_argument("--instructions", action="store_true",
                      help="instructions per request, counted by callgrind (c4 load; needs valgrind)")
    mem.add_argument("--targets", default=os.environ.get("BENCH_MEMORY_TARGETS", "floor,gateway"))
    mem.add_argument("--streams", default=os.environ.get("BENCH_STREAMS", "1000,10000"))
    mem.add_argument("--soak", default=os.environ.get("BENCH_SOAK", "0"), help="seconds of soak; 0 = none")
    mem.add_argument("--soak-only", action="store_true", help="skip the idle-streams part")
    mem.add_argument("--interval", type=int, default=int(os.environ.get("BENCH_SOAK_INTERVAL", "10")))
    args = parser.parse_args()
    _need_tools()
    if args.command == "profile":
        if args.cpu:
            return profile.cpu_per_request(args.target, args.seconds, args.stream)
        if args.instructions:
            return profile.instructions_per_request(args.target, args.seconds, args.stream)
        return profile.run(args.target, args.seconds, args.stream, args.top)
    return cmd_memory(args) if args.command == "memory" else cmd_run(args)


if __name__ == "__main__":
    sys.exit(main())
