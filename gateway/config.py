"""``gateway.yaml``: loaded and validated once into frozen objects.

Validation collects every problem with its YAML path (``deployments[1].url: ...``) instead of
stopping at the first, so ``gateway check-config`` can show an operator the whole list. The hot
path only ever sees the frozen result.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar
from urllib.parse import urlsplit

import yaml

Dialect = Literal["openai", "azure", "foundry"]
ExtraParameters = Literal["drop", "pass-through", "error"]
LogLevel = Literal["debug", "info", "warning", "error"]
LogFormat = Literal["json", "console"]
DIALECTS: tuple[Dialect, ...] = ("openai", "azure", "foundry")
EXTRA_PARAMETER_MODES: tuple[ExtraParameters, ...] = ("drop", "pass-through", "error")
LOG_LEVELS: tuple[LogLevel, ...] = ("debug", "info", "warning", "error")
LOG_FORMATS: tuple[LogFormat, ...] = ("json", "console")

_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
_API_VERSION = re.compile(r"^\d{4}-\d{2}-\d{2}(-preview)?$")
_SHA256 = re.compile(r"^sha256:([0-9a-fA-F]{64})$")


class ConfigError(Exception):
    """The config is invalid; ``errors`` holds every problem, each prefixed with its YAML path."""

    def __init__(self, errors: list[str]) -> None:
        super().__init__("\n".join(errors))
        self.errors = errors


@dataclass(frozen=True, slots=True)
class Limits:
    rpm: int | None = None
    tpm: int | None = None
    tokens_per_day: int | None = None
    tokens_per_month: int | None = None

    @property
    def empty(self) -> bool:
        return not (self.rpm or self.tpm or self.tokens_per_day or self.tokens_per_month)


@dataclass(frozen=True, slots=True)
class Timeouts:
    connect_s: float = 5.0
    first_byte_s: float = 120.0
    idle_s: float = 60.0


@dataclass(frozen=True, slots=True)
class ServerConfig:
    host: str = "127.0.0.1"
    port: int = 8080
    workers: int = 1
    max_body_bytes: int = 8 * 1024 * 1024
    #: A non-streamed upstream answer larger than this is a 502 (``too_large``), not held in memory.
    #: The largest legitimate answers are embeddings: 2,048 inputs of 3,072 floats is about 130 MB.
    max_response_bytes: int = 256 * 1024 * 1024
    shutdown_timeout_s: float = 30.0
    #: A write to a caller that waits this long for it to read closes its connection (499).
    send_timeout_s: float = 60.0
    #: Slowloris: a request's line and headers must arrive within this (408 and close otherwise).
    header_timeout_s: float = 10.0
    #: The whole body must arrive within this (408 otherwise).
    body_timeout_s: float = 30.0
    #: An idle kept-alive connection is closed after this.
    keepalive_timeout_s: float = 75.0
    #: The longest request line, and the longest header (name plus value); longer -> 400.
    max_header_line_bytes: int = 8190
    #: More headers than this -> 400.
    max_headers: int = 100


@dataclass(frozen=True, slots=True)
class StoreConfig:
    url: str = "memory://"
    on_error: Literal["open", "closed"] = "open"
    timeout_ms: int = 100

    @property
    def scheme(self) -> str:
        return self.url.split("://", 1)[0]


@dataclass(frozen=True, slots=True)
class RateLimitSettings:
    """``ratelimit:`` in gateway.yaml: how admission estimates a request's token cost."""

    #: Completion tokens reserved when a request sets neither ``max_tokens`` nor
    #: ``max_completion_tokens``; replaced by the actual usage when the response completes.
    default_max_tokens: int = 1024


@dataclass(frozen=True, slots=True)
class Deployment:
    name: str
    dialect: Dialect
    url: str
    api_key: str = field(repr=False)
    deployment: str | None = None
    model: str | None = None
    model_deployment: str | None = None
    api_version: str | None = None
    priority: int = 0
    weight: float = 1.0
    limits: Limits = Limits()
    timeouts: Timeouts = Timeouts()
    extra_parameters: ExtraParameters = "drop"


@dataclass(frozen=True, slots=True)
class Model:
    name: str
    deployments: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Team:
    name: str
    #: SHA-256 digests of the team's keys; plain keys never outlive loading.
    key_digests: tuple[bytes, ...] = field(repr=False)
    limits: Limits = Limits()
    #: ``None`` means every model.
    models: frozenset[str] | None = None

    def may_use(self, model: str) -> bool:
        return self.models is None or model in self.models


@dataclass(frozen=True, slots=True)
class SimulatorSettings:
    """An embedded simulator started beside the gateway (``simulator:`` in gateway.yaml)."""

    host: str = "127.0.0.1"
    port: int = 8081
    api_key: str = "sim-key"
    latency_per_token_s: float = 0.0


@dataclass(frozen=True, slots=True)
class RoutingSettings:
    """``routing:``: how a pool is chosen from, and when a deployment is left alone."""

    #: ``weighted`` (by ``weight``) or ``least-utilized`` (most headroom the upstream reported).
    strategy: Literal["weighted", "least-utilized"] = "weighted"
    #: Attempts per request across a pool, capped by the pool's size.
    max_attempts: int = 3
    #: How long an upstream 429 without ``retry-after`` cools its deployment.
    cooldown_s: float = 10.0
    #: Consecutive 5xx/connect/timeout failures that open a deployment's breaker.
    breaker_failures: int = 5
    #: How long an open breaker keeps a deployment out before one probe may test it.
    breaker_open_s: float = 30.0
    #: How often each replica reads the shared cooldown and breaker state from the store.
    sync_ms: int = 100


@dataclass(frozen=True, slots=True)
class LoggingConfig:
    level: LogLevel = "info"
    format: LogFormat = "json"


@dataclass(frozen=True, slots=True)
class MetricsConfig:
    """Where ``/metrics`` is served: the main port when ``port`` is ``None``, else only that port."""

    port: int | None = None
    #: ``None``: the server's host.
    host: str | None = None


@dataclass(frozen=True, slots=True)
class Config:
    server: ServerConfig
    store: StoreConfig
    deployments: Mapping[str, Deployment]
    models: Mapping[str, Model]
    teams: Mapping[str, Team]
    #: SHA-256 digest of a key -> the team that owns it.
    keys: Mapping[bytes, Team] = field(repr=False)
    simulator: SimulatorSettings | None = None
    source: str = "<memory>"
    ratelimit: RateLimitSettings = RateLimitSettings()
    #: SHA-256 digests of the admin keys (``admin.keys``): they may read every team's usage.
    admin_keys: frozenset[bytes] = field(default=frozenset(), repr=False)
    routing: RoutingSettings = RoutingSettings()
    logging: LoggingConfig = LoggingConfig()
    metrics: MetricsConfig = MetricsConfig()

    def pool(self, model: str) -> tuple[Deployment, ...]:
        return tuple(self.deployments[name] for name in self.models[model].deployments)

    def summary(self) -> str:
        return (
            f"{len(self.deployments)} deployments, {len(self.models)} models, {len(self.teams)} teams, "
            f"store {self.store.scheme}://, {self.server.workers} worker(s) on "
            f"{self.server.host}:{self.server.port}"
        )


def key_digest(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


def load(
    path: str | os.PathLike[str],
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Config:
    """Read, expand ``${VAR}`` and validate a config file. Raises ``ConfigError``.

    ``overrides`` replace keys of the ``server:`` section (the CLI's ``--workers`` and friends).
    """
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError([f"{path}: cannot read: {exc.strerror}"]) from exc
    return parse(text, environ=environ, source=str(path), overrides=overrides)


def parse(
    text: str,
    *,
    environ: Mapping[str, str] | None = None,
    source: str = "<string>",
    overrides: Mapping[str, Any] | None = None,
) -> Config:
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError([f"{source}: not valid YAML: {exc}"]) from exc
    if overrides and isinstance(raw, dict):
        server = raw.get("server")
        raw["server"] = {**(server if isinstance(server, dict) else {}), **overrides}
    return _Validator(os.environ if environ is None else environ, source).config(raw)


T = TypeVar("T")


class _Validator:
    """Walks the YAML tree, turning it into frozen objects and collecting errors with their paths."""

    def __init__(self, environ: Mapping[str, str], source: str) -> None:
        self.environ = environ
        self.source = source
        self.errors: list[str] = []

    def error(self, path: str, message: str) -> None:
        self.errors.append(f"{path}: {message}")

    # -- primitives ---------------------------------------------------------------------------

    def mapping(self, value: Any, path: str, allowed: set[str], required: set[str] = frozenset()) -> dict[str, Any]:  # type: ignore[assignment]
        if value is None:
            value = {}
        if not isinstance(value, dict):
            self.error(path, f"expected a mapping, got {_kind(value)}")
            return {}
        for key in value:
            if key not in allowed:
                self.error(f"{path}.{key}", f"unknown key (allowed: {', '.join(sorted(allowed))})")
        for key in sorted(required - value.keys()):
            self.error(f"{path}.{key}", "is required")
        return {k: v for k, v in value.items() if k in allowed}

    def expand(self, value: Any, path: str) -> Any:
        if not isinstance(value, str):
            return value

        def substitute(match: re.Match[str]) -> str:
            name = match.group(1)
            if name not in self.environ:
                self.error(path, f"environment variable {name} is not set")
                return ""
            return self.environ[name]

        return _ENV_REF.sub(substitute, value)

    def string(self, raw: dict[str, Any], key: str, path: str, default: str | None = None) -> str | None:
        if key not in raw or raw[key] is None:
            return default
        value = self.expand(raw[key], f"{path}.{key}")
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            self.error(f"{path}.{key}", f"expected a string, got {_kind(value)}")
            return default
        return str(value)

    def number(
        self,
        raw: dict[str, Any],
        key: str,
        path: str,
        default: T,
        *,
        kind: Callable[[Any], Any] = int,
        minimum: float = 0,
    ) -> T:
        if key not in raw or raw[key] is None:
            return default
        value = self.expand(raw[key], f"{path}.{key}")
        if isinstance(value, str):
            try:
                value = kind(value)
            except ValueError:
                pass
        ok = not isinstance(value, bool) and isinstance(value, int | float)
        if ok and kind is int and isinstance(value, float) and not value.is_integer():
            ok = False
        if not ok:
            self.error(f"{path}.{key}", f"expected {'an integer' if kind is int else 'a number'}, got {_kind(value)}")
            return default
        if value < minimum:
            self.error(f"{path}.{key}", f"must be at least {minimum:g}, got {value}")
            return default
        result: T = kind(value)
        return result

    def choice(self, raw: dict[str, Any], key: str, path: str, options: tuple[str, ...], default: str) -> str:
        value = self.string(raw, key, path, default)
        if value not in options:
            self.error(f"{path}.{key}", f"must be one of {', '.join(options)}, got {value!r}")
            return default
        return value

    # -- sections -----------------------------------------------------------------------------

    def config(self, raw: Any) -> Config:
        top = self.mapping(
            raw,
            "$",
            {
                "server",
                "store",
                "deployments",
                "models",
                "teams",
                "simulator",
                "ratelimit",
                "admin",
                "routing",
                "logging",
                "metrics",
            },
            {"deployments", "models", "teams"},
        )
        server = self.server(top.get("server"), "server")
        store = self.store(top.get("store"), "store")
        deployments = self.deployments(top.get("deployments"), "deployments")
        models = self.models(top.get("models"), "models", deployments)
        teams, keys = self.teams(top.get("teams"), "teams", models, deployments)
        simulator = self.simulator(top["simulator"], "simulator") if top.get("simulator") is not None else None
        ratelimit = self.ratelimit(top.get("ratelimit"), "ratelimit")
        admin_keys = self.admin(top.get("admin"), "admin", keys)
        routing = self.routing(top.get("routing"), "routing")
        logging = self.logging(top.get("logging"), "logging")
        metrics = self.metrics(top.get("metrics"), "metrics", server)
        if store.scheme == "memory" and server.workers > 1:
            self.error(
                "store.url",
                f"memory:// keeps counters per process, so it cannot serve {server.workers} workers; "
                "use redis:// or workers: 1",
            )
        if self.errors:
            raise ConfigError([f"{self.source}: {e}" for e in self.errors])
        return Config(
            server,
            store,
            deployments,
            models,
            teams,
            keys,
            simulator,
            self.source,
            ratelimit=ratelimit,
            admin_keys=admin_keys,
            routing=routing,
            logging=logging,
            metrics=metrics,
        )

    def routing(self, raw: Any, path: str) -> RoutingSettings:
        r = self.mapping(raw, path, {"strategy", "max_attempts", "cooldown_s", "breaker", "sync_ms"})
        breaker = self.mapping(r.get("breaker"), f"{path}.breaker", {"failures", "open_s"})
        d = RoutingSettings()
        bp = f"{path}.breaker"
        return RoutingSettings(
            strategy=self.choice(r, "strategy", path, ("weighted", "least-utilized"), d.strategy),  # type: ignore[arg-type]
            max_attempts=self.number(r, "max_attempts", path, d.max_attempts, minimum=1),
            cooldown_s=self.number(r, "cooldown_s", path, d.cooldown_s, kind=float, minimum=0.001),
            breaker_failures=self.number(breaker, "failures", bp, d.breaker_failures, minimum=1),
            breaker_open_s=self.number(breaker, "open_s", bp, d.breaker_open_s, kind=float, minimum=0.001),
            sync_ms=self.number(r, "sync_ms", path, d.sync_ms, minimum=10),
        )

    def admin(self, raw: Any, path: str, team_keys: Mapping[bytes, Team]) -> frozenset[bytes]:
        r = self.mapping(raw, path, {"keys"})
        digests: set[bytes] = set()
        raw_keys = r.get("keys") or []
        if not isinstance(raw_keys, list):
            self.error(f"{path}.keys", "expected a list of keys")
            return frozenset()
        for j, key in enumerate(raw_keys):
            digest = self.key(key, f"{path}.keys[{j}]")
            if digest is None:
                continue
            if digest in team_keys:
                self.error(f"{path}.keys[{j}]", f"this key is also team {team_keys[digest].name!r}'s key")
            digests.add(digest)
        return frozenset(digests)

    def key(self, raw: Any, path: str) -> bytes | None:
        """A plain key or ``sha256:<hex>``, as its digest."""
        value = self.expand(raw, path)
        if not isinstance(value, str) or not value:
            self.error(path, "expected a non-empty string key")
            return None
        hashed = _SHA256.match(value)
        return bytes.fromhex(hashed.group(1)) if hashed else key_digest(value)

    def server(self, raw: Any, path: str) -> ServerConfig:
        r = self.mapping(
            raw,
            path,
            {
                "host",
                "port",
                "workers",
                "max_body_bytes",
                "max_response_bytes",
                "shutdown_timeout_s",
                "send_timeout_s",
                "header_timeout_s",
                "body_timeout_s",
                "keepalive_timeout_s",
                "max_header_line_bytes",
                "max_headers",
            },
        )
        d = ServerConfig()
        workers_raw = self.expand(r.get("workers", 1), f"{path}.workers")
        if workers_raw == "auto":
            workers = os.cpu_count() or 1
        else:
            workers = self.number({"workers": workers_raw}, "workers", path, 1, minimum=1)
        return ServerConfig(
            host=self.string(r, "host", path, "127.0.0.1") or "127.0.0.1",
            port=self.number(r, "port", path, 8080, minimum=0),
            workers=workers,
            max_body_bytes=self.number(r, "max_body_bytes", path, 8 * 1024 * 1024, minimum=1),
            max_response_bytes=self.number(r, "max_response_bytes", path, d.max_response_bytes, minimum=1),
            shutdown_timeout_s=self.number(r, "shutdown_timeout_s", path, d.shutdown_timeout_s, kind=float),
            send_timeout_s=self.number(r, "send_timeout_s", path, d.send_timeout_s, kind=float, minimum=0.001),
            header_timeout_s=self.number(r, "header_timeout_s", path, d.header_timeout_s, kind=float, minimum=0.001),
            body_timeout_s=self.number(r, "body_timeout_s", path, d.body_timeout_s, kind=float, minimum=0.001),
            keepalive_timeout_s=self.number(
                r, "keepalive_timeout_s", path, d.keepalive_timeout_s, kind=float, minimum=0.001
            ),
            max_header_line_bytes=self.number(r, "max_header_line_bytes", path, d.max_header_line_bytes, minimum=256),
            max_headers=self.number(r, "max_headers", path, d.max_headers, minimum=1),
        )

    def store(self, raw: Any, path: str) -> StoreConfig:
        r = self.mapping(raw, path, {"url", "on_error", "timeout_ms"})
        url = self.string(r, "url", path, "memory://") or "memory://"
        scheme = url.split("://", 1)[0] if "://" in url else ""
        if scheme not in {"memory", "redis", "rediss", "redis+cluster", "rediss+cluster"}:
            self.error(f"{path}.url", f"unsupported store {url!r} (memory://, redis://, rediss://, redis+cluster://)")
        on_error = self.choice(r, "on_error", path, ("open", "closed"), "open")
        timeout_ms = self.number(r, "timeout_ms", path, 100, minimum=1)
        return StoreConfig(url, on_error, timeout_ms)  # type: ignore[arg-type]

    def ratelimit(self, raw: Any, path: str) -> RateLimitSettings:
        r = self.mapping(raw, path, {"default_max_tokens"})
        d = RateLimitSettings()
        return RateLimitSettings(
            default_max_tokens=self.number(r, "default_max_tokens", path, d.default_max_tokens, minimum=0),
        )

    def limits(self, raw: Any, path: str) -> Limits:
        r = self.mapping(raw, path, {"rpm", "tpm", "tokens_per_day", "tokens_per_month"})
        values = {
            k: self.number(r, k, path, None, minimum=0) for k in ("rpm", "tpm", "tokens_per_day", "tokens_per_month")
        }
        return Limits(**values)

    def timeouts(self, raw: Any, path: str) -> Timeouts:
        r = self.mapping(raw, path, {"connect_s", "first_byte_s", "idle_s"})
        d = Timeouts()
        return Timeouts(
            connect_s=self.number(r, "connect_s", path, d.connect_s, kind=float, minimum=0.001),
            first_byte_s=self.number(r, "first_byte_s", path, d.first_byte_s, kind=float, minimum=0.001),
            idle_s=self.number(r, "idle_s", path, d.idle_s, kind=float, minimum=0.001),
        )

    def deployments(self, raw: Any, path: str) -> dict[str, Deployment]:
        if not isinstance(raw, list):
            if raw is not None:
                self.error(path, f"expected a list of deployments, got {_kind(raw)}")
            return {}
        result: dict[str, Deployment] = {}
        for i, item in enumerate(raw):
            p = f"{path}[{i}]"
            r = self.mapping(
                item,
                p,
                {
                    "name",
                    "dialect",
                    "url",
                    "deployment",
                    "model",
                    "model_deployment",
                    "api_version",
                    "api_key",
                    "priority",
                    "weight",
                    "limits",
                    "timeouts",
                    "extra_parameters",
                },
                {"name", "dialect", "url", "api_key"},
            )
            if not r:
                continue
            name = self.string(r, "name", p) or f"#{i}"
            if name in result:
                self.error(f"{p}.name", f"duplicate deployment name {name!r}")
            dialect = self.choice(r, "dialect", p, DIALECTS, "openai")
            url = (self.string(r, "url", p) or "").rstrip("/")
            parts = urlsplit(url)
            if "url" in r and (parts.scheme not in {"http", "https"} or not parts.netloc):
                self.error(f"{p}.url", f"expected an http(s) URL, got {url!r}")
            api_version = self.string(r, "api_version", p)
            if dialect in ("azure", "foundry"):
                if api_version is None:
                    api_version = "2024-10-21" if dialect == "azure" else "2024-05-01-preview"
                elif not _API_VERSION.match(api_version):
                    self.error(f"{p}.api_version", f"expected YYYY-MM-DD or YYYY-MM-DD-preview, got {api_version!r}")
            deployment = self.string(r, "deployment", p)
            if dialect == "azure" and not deployment:
                self.error(f"{p}.deployment", "is required for an azure deployment (the path's deployment id)")
            model = self.string(r, "model", p)
            if dialect == "openai" and not model:
                self.error(f"{p}.model", "is required for an openai deployment (sent as body model)")
            result[name] = Deployment(
                name=name,
                dialect=dialect,  # type: ignore[arg-type]
                url=url,
                api_key=self.string(r, "api_key", p) or "",
                deployment=deployment,
                model=model,
                model_deployment=self.string(r, "model_deployment", p),
                api_version=api_version,
                priority=self.number(r, "priority", p, 0, minimum=-(2**31)),
                weight=self.number(r, "weight", p, 1.0, kind=float, minimum=0),
                limits=self.limits(r.get("limits"), f"{p}.limits"),
                timeouts=self.timeouts(r.get("timeouts"), f"{p}.timeouts"),
                extra_parameters=self.choice(r, "extra_parameters", p, EXTRA_PARAMETER_MODES, "drop"),  # type: ignore[arg-type]
            )
        return result

    def models(self, raw: Any, path: str, deployments: Mapping[str, Deployment]) -> dict[str, Model]:
        if not isinstance(raw, dict):
            if raw is not None:
                self.error(path, f"expected a mapping of model names, got {_kind(raw)}")
            return {}
        result: dict[str, Model] = {}
        for name, item in raw.items():
            p = f"{path}.{name}"
            r = self.mapping(item, p, {"deployments"}, {"deployments"})
            names = r.get("deployments")
            if names is None:
                continue
            if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
                self.error(f"{p}.deployments", "expected a non-empty list of deployment names")
                continue
            for j, dep in enumerate(names):
                if dep not in deployments:
                    self.error(f"{p}.deployments[{j}]", f"deployment {dep!r} is not defined")
            result[str(name)] = Model(str(name), tuple(names))
        # A deployment's own name pins it, so it must not shadow a model name.
        for dep in deployments:
            if dep in result:
                self.error(f"{path}.{dep}", f"{dep!r} names both a model and a deployment")
        return result

    def teams(
        self, raw: Any, path: str, models: Mapping[str, Model], deployments: Mapping[str, Deployment]
    ) -> tuple[dict[str, Team], dict[bytes, Team]]:
        if not isinstance(raw, dict):
            if raw is not None:
                self.error(path, f"expected a mapping of team names, got {_kind(raw)}")
            return {}, {}
        teams: dict[str, Team] = {}
        keys: dict[bytes, Team] = {}
        owners: dict[bytes, str] = {}
        for name, item in raw.items():
            p = f"{path}.{name}"
            r = self.mapping(item, p, {"keys", "limits", "models"}, {"keys"})
            digests: list[bytes] = []
            raw_keys = r.get("keys")
            if raw_keys is not None and (not isinstance(raw_keys, list) or not raw_keys):
                self.error(f"{p}.keys", "expected a non-empty list of keys")
                raw_keys = []
            for j, key in enumerate(raw_keys or []):
                kp = f"{p}.keys[{j}]"
                digest = self.key(key, kp)
                if digest is None:
                    continue
                if digest in owners:
                    self.error(kp, f"this key is already used by team {owners[digest]!r}")
                owners[digest] = str(name)
                digests.append(digest)
            allowed: frozenset[str] | None = None
            if r.get("models") is not None:
                m = r["models"]
                if not isinstance(m, list) or not all(isinstance(x, str) for x in m):
                    self.error(f"{p}.models", "expected a list of model names")
                else:
                    for j, model in enumerate(m):
                        if model not in models and model not in deployments:
                            self.error(f"{p}.models[{j}]", f"model {model!r} is not defined")
                    allowed = frozenset(m)
            team = Team(str(name), tuple(digests), self.limits(r.get("limits"), f"{p}.limits"), allowed)
            teams[team.name] = team
            for digest in digests:
                keys[digest] = team
        return teams, keys

    def simulator(self, raw: Any, path: str) -> SimulatorSettings:
        r = self.mapping(raw, path, {"host", "port", "api_key", "latency_per_token_s"})
        d = SimulatorSettings()
        return SimulatorSettings(
            host=self.string(r, "host", path, d.host) or d.host,
            port=self.number(r, "port", path, d.port, minimum=0),
            api_key=self.string(r, "api_key", path, d.api_key) or d.api_key,
            latency_per_token_s=self.number(r, "latency_per_token_s", path, 0.0, kind=float),
        )

    def logging(self, raw: Any, path: str) -> LoggingConfig:
        r = self.mapping(raw, path, {"level", "format"})
        return LoggingConfig(
            level=self.choice(r, "level", path, LOG_LEVELS, "info"),  # type: ignore[arg-type]
            format=self.choice(r, "format", path, LOG_FORMATS, "json"),  # type: ignore[arg-type]
        )

    def metrics(self, raw: Any, path: str, server: ServerConfig) -> MetricsConfig:
        r = self.mapping(raw, path, {"port", "host"})
        port: int | None = self.number(r, "port", path, None, minimum=1)
        if port is not None and port > 65535:
            self.error(f"{path}.port", f"must be at most 65535, got {port}")
            port = None
        if port is not None and port == server.port:
            self.error(f"{path}.port", f"must differ from server.port ({port}); omit it to serve /metrics there")
        return MetricsConfig(port=port, host=self.string(r, "host", path))


def _kind(value: Any) -> str:
    if value is None:
        return "nothing"
    return {dict: "a mapping", list: "a list", str: "a string", bool: "a boolean"}.get(
        type(value), type(value).__name__
    )
