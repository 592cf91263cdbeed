"""Markdown tables and JSON from a run: absolute figures, ratios to direct and floor, and the targets."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from bench.machine import BUSY_WARN

RESULTS = Path(__file__).resolve().parent / "results"
FLOOR_RATIO_TARGET = 0.75  # DESIGN.md: throughput >= 0.75x the bare aiohttp pass-through per worker
ADDED_MS_TARGET = 1.0  # DESIGN.md: added p50 latency and added TTFB at concurrency 1 <= 1 ms

Row = dict[str, Any]
NA = "n/a"


def _pct(run: dict[str, Any], q: str) -> float:
    return float(run["latency_us"]["percentiles"][q]) / 1000.0


@dataclass(frozen=True)
class Metric:
    key: str
    header: str
    get: Callable[[Row], float]
    unit: str  # "rps" or "ms"


METRICS = (
    Metric("json_rps", "req/s c32", lambda r: r["json_c32"]["rps"], "rps"),
    Metric("json_p50", "p50 ms c32", lambda r: _pct(r["json_c32"], "50"), "ms"),
    Metric("json_p99", "p99 ms c32", lambda r: _pct(r["json_c32"], "99"), "ms"),
    Metric("json_c1_p50", "p50 ms c1", lambda r: _pct(r["json_c1"], "50"), "ms"),
    Metric("stream_rps", "streams/s c32", lambda r: r["stream_c32"]["rps"], "rps"),
    Metric("stream_p50", "stream p50 ms c32", lambda r: _pct(r["stream_c32"], "50"), "ms"),
    Metric("stream_p99", "stream p99 ms c32", lambda r: _pct(r["stream_c32"], "99"), "ms"),
    Metric("ttfb_p50", "TTFB p50 ms c1", lambda r: r["stream_ttfb_c1"]["ttfb_ms"]["p50"], "ms"),
)
_BY_KEY = {m.key: m for m in METRICS}


def _fmt(value: float | None, unit: str) -> str:
    if value is None or math.isnan(value):
        return NA
    return f"{value:,.0f}" if unit == "rps" else f"{value:.3f}"


def _ratio(value: float | None, base: float | None) -> str:
    return NA if value is None or not base else f"{value / base:.2f}"


def _errors(row: Row) -> int:
    wrk_errors = sum(sum(row[k]["errors"].values()) for k in ("json_c32", "json_c1", "stream_c32"))
    return wrk_errors + int(row["stream_ttfb_c1"]["errors"])


def summarise(rows: list[Row]) -> dict[str, dict[str, float]]:
    """name -> metric -> value, plus added latency against direct, for every target that ran."""
    figures = {r["name"]: {m.key: m.get(r) for m in METRICS} | {"errors": float(_errors(r))}
               for r in rows if r.get("status") == "ok"}
    direct = figures.get("direct")
    for values in figures.values():
        if direct:
            values["added_json_c1_p50_ms"] = values["json_c1_p50"] - direct["json_c1_p50"]
            values["added_ttfb_p50_ms"] = values["ttfb_p50"] - direct["ttfb_p50"]
    return figures


def _table(header: list[str], lines: list[list[str]]) -> list[str]:
    align = ["---"] + ["---:"] * (len(header) - 1)
    return ["| " + " | ".join(header) + " |", "| " + " | ".join(align) + " |",
            *("| " + " | ".join(cells) + " |" for cells in lines)]


def markdown(rows: list[Row], machine: dict[str, str], settings: dict[str, Any], command: str) -> str:
    figures = summarise(rows)
    ran = [r for r in rows if r["name"] in figures]
    label = {r["name"]: f"{r['name']} — {r['label']}" for r in rows}

    def cells(name: str, keys: list[str]) -> list[str]:
        f = figures[name]
        return [_fmt(f.get(k), _BY_KEY[k].unit if k in _BY_KEY else "ms") for k in keys]

    def added(name: str, key: str) -> str:
        value = figures[name].get(key)
        return NA if value is None else f"{value:+.3f}"

    out = [f"# Benchmark results ({time.strftime('%Y-%m-%d %H:%M %Z')})", "", f"Command: `{command}`", "",
           "Settings: " + ", ".join(f"{k}={v}" for k, v in settings.items()), "", "Machine:", ""]
    out += [f"- {k}: {v}" for k, v in machine.items()]
    out += ["", "## Non-streaming (`POST /v1/chat/completions`)", ""]
    out += _table(["target", "req/s c32", "p50 ms c32", "p99 ms c32", "p50 ms c1", "added p50 ms c1",
                   "errors (all runs)"],
                  [[label[r["name"]], *cells(r["name"], ["json_rps", "json_p50", "json_p99", "json_c1_p50"]),
                    added(r["name"], "added_json_c1_p50_ms"), f"{figures[r['name']]['errors']:.0f}"]
                   for r in ran])
    out += ["", "## Streaming (whole SSE streams, 21 events)", ""]
    out += _table(["target", "streams/s c32", "stream p50 ms c32", "stream p99 ms c32", "TTFB p50 ms c1",
                   "added TTFB ms"],
                  [[label[r["name"]], *cells(r["name"], ["stream_rps", "stream_p50", "stream_p99",
                                                         "ttfb_p50"]),
                    added(r["name"], "added_ttfb_p50_ms")] for r in ran])
    for base in ("direct", "floor"):
        if base not in figures:
            continue
        out += ["", f"## Ratios to {base} (throughput: higher is better; latency: lower is better)", ""]
        ratios = [[r["name"], *(_ratio(figures[r["name"]][m.key], figures[base][m.key]) for m in METRICS)]
                  for r in ran]
        out += _table(["target", *(m.header for m in METRICS)], ratios)
    out += _verdicts(figures)
    busy = [f"{r['name']} {r['cpu_busy_before']:.0%}" for r in rows
            if r.get("cpu_busy_before", 0) > BUSY_WARN]
    if busy:
        out += ["", "## Warning: the machine was not idle", "",
                "CPU busy (all cores) in the second before a target started, from processes outside the "
                "harness: " + ", ".join(busy) + ". Those rows are noisy; rerun on a quiet machine."]
    skipped = [r for r in rows if r.get("status") != "ok"]
    if skipped:
        out += ["", "## Not measured", ""]
        out += [f"- {r['name']} ({r['status']}): {r.get('note', '')}" for r in skipped]
    return "\n".join(out) + "\n"


def _verdicts(figures: dict[str, dict[str, float]]) -> list[str]:
    gateways = [n for n in figures if n.startswith("gateway")]
    floor = figures.get("floor")
    if not gateways or not floor:
        return ["", "## DESIGN.md targets", "", "No gateway row in this run: judged once the gateway runs."]
    lines = ["", "## DESIGN.md targets", ""]
    for name in gateways:
        f = figures[name]
        ratio = f["json_rps"] / floor["json_rps"]
        checks = [
            (f"req/s ÷ floor = {ratio:.2f}", ratio >= FLOOR_RATIO_TARGET, f">= {FLOOR_RATIO_TARGET}"),
            (f"streams/s ÷ floor = {f['stream_rps'] / floor['stream_rps']:.2f}",
             f["stream_rps"] / floor["stream_rps"] >= FLOOR_RATIO_TARGET, f">= {FLOOR_RATIO_TARGET}"),
            (f"added p50 c1 = {f.get('added_json_c1_p50_ms', math.nan):.3f} ms",
             f.get("added_json_c1_p50_ms", math.inf) <= ADDED_MS_TARGET, f"<= {ADDED_MS_TARGET} ms"),
            (f"added TTFB = {f.get('added_ttfb_p50_ms', math.nan):.3f} ms",
             f.get("added_ttfb_p50_ms", math.inf) <= ADDED_MS_TARGET, f"<= {ADDED_MS_TARGET} ms"),
        ]
        if name == "gateway-workers":
            lines.append(f"- {name}: several workers, so the per-worker floor ratio is shown for scale only")
        lines += [f"- {name}: {text} ({'meets' if ok else 'MISSES'} {goal})" for text, ok, goal in checks]
    return lines


def write(name: str, text: str, data: dict[str, Any]) -> tuple[Path, Path]:
    RESULTS.mkdir(parents=True, exist_ok=True)
    md, js = RESULTS / f"{name}.md", RESULTS / f"{name}.json"
    md.write_text(text)
    js.write_bytes(orjson.dumps(data, option=orjson.OPT_INDENT_2))
    stamp = time.strftime("%Y%m%d-%H%M%S")
    (RESULTS / f"{name}-{stamp}.json").write_bytes(js.read_bytes())  # keep history next to latest
    return md, js
