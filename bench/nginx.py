"""nginx in two roles: the static upstream every target talks to, and the reference proxy hop."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from bench import payloads
from bench.procs import LOOPBACK, Proc, spawn, wait_port

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"


def _main(tmp: Path, name: str, workers: int, http_body: str) -> str:
    # As root the workers would drop to `nobody`, which cannot enter our private temp dir.
    user = "user root;\n" if os.geteuid() == 0 else ""
    return f"""{user}worker_processes {workers};
daemon off;
pid {tmp}/{name}.pid;
error_log {tmp}/{name}.log warn;
events {{ worker_connections 16384; multi_accept on; }}
http {{
    access_log off;
    client_body_temp_path {tmp}/{name}-body;
    proxy_temp_path {tmp}/{name}-proxy;
    fastcgi_temp_path {tmp}/{name}-fcgi;
    uwsgi_temp_path {tmp}/{name}-uwsgi;
    scgi_temp_path {tmp}/{name}-scgi;
    keepalive_requests 10000000;
    keepalive_timeout 120s;
    tcp_nodelay on;
{http_body}
}}
"""


def upstream_conf(tmp: Path, port: int, workers: int) -> str:
    """POST /v1/chat/completions -> static JSON; POST /stream/v1/chat/completions -> static SSE."""
    root = tmp / "upstream-root"
    for path, body in ((payloads.JSON_PATH, payloads.COMPLETION), (payloads.STREAM_PATH, payloads.STREAM)):
        (root / path.lstrip("/")).parent.mkdir(parents=True, exist_ok=True)
        (root / path.lstrip("/")).write_bytes(body)
    # The static module answers POST with 405; `error_page 405 =200 $uri` re-serves the file as 200.
    # (An inline `return 200 '...'` would be cheaper but nginx caps a parameter at 4 KiB.)
    return _main(tmp, "upstream", workers, f"""
    server {{
        listen {LOOPBACK}:{port} reuseport backlog=4096;
        root {root};
        location = {payloads.JSON_PATH} {{
            default_type application/json;
            error_page 405 =200 $uri;
        }}
        location = {payloads.STREAM_PATH} {{
            default_type text/event-stream;
            add_header Cache-Control no-cache;
            error_page 405 =200 $uri;
        }}
        location / {{ return 404; }}
    }}""")


def proxy_conf(tmp: Path, port: int, upstream_port: int, workers: int) -> str:
    """proxy_pass done well: pooled keepalive upstream connections, no buffering for SSE."""
    return _main(tmp, "proxy", workers, f"""
    upstream bench_upstream {{
        server {LOOPBACK}:{upstream_port};
        keepalive 256;
        keepalive_requests 10000000;
    }}
    server {{
        listen {LOOPBACK}:{port} reuseport backlog=4096;
        location / {{
            proxy_pass http://bench_upstream;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }}
        location /stream/ {{
            proxy_pass http://bench_upstream;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_buffering off;
        }}
    }}""")


def start(tmp: Path, name: str, conf: str, port: int) -> Proc:
    path = tmp / f"{name}.conf"
    path.write_text(conf)
    # -e: never touch the distribution's /var/log/nginx; -p: relative paths stay in tmp.
    log = tmp / f"{name}.log"  # nginx's error log and its stderr, one file for log_tail()
    proc = spawn(f"nginx-{name}", [NGINX, "-p", str(tmp), "-e", str(log), "-c", str(path)], log)
    wait_port(proc, port)
    return proc
