"""deploy/: every file parses, and what the files say about each other holds (ports, probes, paths)."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import yaml

from gateway import config as config_module
from gateway.app import build_app
from gateway.supervisor import KILL_GRACE_S
from plugins import default_plugins

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "kubernetes"
#: Written alongside the metrics plugin; compose mounts them, so they are checked once they land.
METRICS_FILES = {DEPLOY / "prometheus" / "prometheus.yaml", DEPLOY / "grafana" / "gateway-dashboard.json"}
ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def load_all(path: Path) -> list[Any]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]


def gateway_config(text: str) -> config_module.Config:
    """The config as the container would load it, with a placeholder for every ${VAR}."""
    environ = {name: "https://placeholder.example" if name.endswith("_URL") else "x" for name in ENV_REF.findall(text)}
    return config_module.parse(text, environ=environ)


def app_get_routes() -> set[str]:
    cfg = gateway_config((DEPLOY / "gateway.compose.yaml").read_text())
    app = build_app(cfg, default_plugins)
    return {r.resource.canonical for r in app.router.routes() if r.method == "GET" and r.resource is not None}


def test_every_deploy_file_parses() -> None:
    files = [p for p in DEPLOY.rglob("*") if p.suffix in {".yaml", ".yml", ".json"}]
    assert len(files) >= 10, files
    for path in files:
        if path.suffix == ".json":
            json.loads(path.read_text())
        else:
            assert load_all(path), f"{path} is empty"


def test_dockerfile_is_multi_stage_non_root_with_healthcheck_and_existing_sources() -> None:
    text = (DEPLOY / "Dockerfile").read_text().replace("\\\n", " ")  # join continued lines
    instructions = [line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")]
    assert sum(line.startswith("FROM ") for line in instructions) >= 2
    user = next(line.split()[1] for line in instructions if line.startswith("USER "))
    assert user not in {"root", "0"}
    healthcheck = next(line for line in instructions if line.startswith("HEALTHCHECK "))
    assert "/healthz" in healthcheck and "/healthz" in app_get_routes()
    for line in instructions:
        if line.startswith("COPY ") and "--from=" not in line:
            *sources, _ = shlex.split(line)[1:]
            for source in sources:
                assert (ROOT / source).exists(), f"COPY source {source} does not exist"
    cmd = json.loads(next(line for line in instructions if line.startswith("CMD "))[4:])
    entrypoint = json.loads(next(line for line in instructions if line.startswith("ENTRYPOINT "))[11:])
    assert [*entrypoint, *cmd] == ["gateway", "run", "--config", "/etc/gateway/gateway.yaml"]
    port = gateway_config((DEPLOY / "gateway.compose.yaml").read_text()).server.port
    assert f"EXPOSE {port}" in instructions
    assert f"127.0.0.1:{port}/healthz" in healthcheck


def test_compose_runs_two_gateways_on_redis_with_prometheus_and_grafana() -> None:
    (compose,) = load_all(DEPLOY / "docker-compose.yaml")
    services = compose["services"]
    assert {"gateway-1", "gateway-2", "redis", "prometheus", "grafana"} <= set(services)
    config_text = (DEPLOY / "gateway.compose.yaml").read_text()
    cfg = gateway_config(config_text)
    assert cfg.store.url == "redis://redis:6379/0"
    for name in ("gateway-1", "gateway-2"):
        gateway = services[name]
        assert gateway["command"] == ["run", "--config", "/etc/gateway/gateway.yaml"]
        assert "./gateway.compose.yaml:/etc/gateway/gateway.yaml:ro" in gateway["volumes"]
        published = [p.rsplit(":", 1)[1] for p in gateway["ports"]]
        assert published == [str(cfg.server.port)]
        assert all(p.startswith("127.0.0.1:") for p in gateway["ports"])
        assert set(ENV_REF.findall(config_text)) <= set(gateway["environment"])
        assert float(gateway["stop_grace_period"].rstrip("s")) >= cfg.server.shutdown_timeout_s + KILL_GRACE_S
        assert (DEPLOY / gateway["build"]["context"] / gateway["build"]["dockerfile"]).is_file()
    for service in services.values():
        for volume in service.get("volumes", []):
            source = (DEPLOY / volume.split(":")[0]).resolve()
            if source in METRICS_FILES and not source.exists():
                print(f"not checked yet: {source.relative_to(ROOT)} comes with the metrics work")
                continue
            assert source.exists(), f"compose mounts {source}, which does not exist"
    _docker_compose_config()


def _docker_compose_config() -> None:
    """`docker compose config` where a Docker CLI with compose exists; otherwise say why not."""
    try:
        version = subprocess.run(["docker", "compose", "version"], capture_output=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as exc:
        print(f"docker compose config not run: no docker CLI ({exc})")
        return
    if version.returncode != 0:
        print(f"docker compose config not run: `docker compose version` failed: {version.stderr.decode().strip()}")
        return
    env = {"AZURE_EAST_URL": "https://x", "AZURE_EAST_KEY": "x", "OPENAI_API_KEY": "x", "RESEARCH_KEY": "x"}
    result = subprocess.run(
        ["docker", "compose", "-f", str(DEPLOY / "docker-compose.yaml"), "config", "--quiet"],
        capture_output=True,
        env={**env, "PATH": "/usr/local/bin:/usr/bin:/bin"},
        timeout=60,
    )
    assert result.returncode == 0, result.stderr.decode()


def k8s(kind: str) -> dict[str, Any]:
    for path in K8S.glob("*.yaml"):
        for doc in load_all(path):
            if doc.get("kind") == kind:
                found: dict[str, Any] = doc
                return found
    raise AssertionError(f"no {kind} in {K8S}")


def test_kubernetes_manifests_agree_with_the_config_and_the_app() -> None:
    deployment, service, configmap = k8s("Deployment"), k8s("Service"), k8s("ConfigMap")
    hpa, pdb = k8s("HorizontalPodAutoscaler"), k8s("PodDisruptionBudget")
    pod = deployment["spec"]["template"]
    (container,) = pod["spec"]["containers"]
    config_text = configmap["data"]["gateway.yaml"]
    cfg = gateway_config(config_text)

    # The port: config -> container -> service.
    (port,) = container["ports"]
    assert port["containerPort"] == cfg.server.port
    assert service["spec"]["ports"][0]["targetPort"] in (port["name"], port["containerPort"])
    assert service["spec"]["selector"].items() <= pod["metadata"]["labels"].items()

    # Probes hit routes the app serves, on that port.
    routes = app_get_routes()
    readiness = urlsplit(container["readinessProbe"]["httpGet"]["path"])
    assert readiness.path == "/readyz" in routes
    # A Redis outage shared by every pod must not empty the Service while on_error: open serves.
    assert parse_qs(readiness.query) == {"store": ["optional"]} and cfg.store.on_error == "open"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz" in routes
    for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
        assert container[probe]["httpGet"]["port"] in (port["name"], port["containerPort"])

    # The ConfigMap is mounted where the command reads the config.
    command = container["command"]
    config_path = Path(command[command.index("--config") + 1])
    (mount,) = [m for m in container["volumeMounts"] if m["name"] == "config"]
    (volume,) = [v for v in pod["spec"]["volumes"] if v["name"] == "config"]
    assert volume["configMap"]["name"] == configmap["metadata"]["name"]
    (item,) = volume["configMap"]["items"]
    assert Path(mount["mountPath"]) / item["path"] == config_path and item["key"] == "gateway.yaml"

    # Every ${VAR} the config needs comes from a Secret, never from a literal.
    env = {e["name"]: e for e in container["env"]}
    for name in ENV_REF.findall(config_text):
        assert "secretKeyRef" in env[name]["valueFrom"], name

    # A drain (shutdown_timeout_s, after the preStop pause, plus the completions) ends before Kubernetes kills.
    pause = float(container["lifecycle"]["preStop"]["exec"]["command"][-1])
    assert pod["spec"]["terminationGracePeriodSeconds"] >= pause + cfg.server.shutdown_timeout_s + KILL_GRACE_S
    assert pod["spec"]["securityContext"]["runAsNonRoot"] is True

    assert hpa["spec"]["scaleTargetRef"]["name"] == deployment["metadata"]["name"]
    assert hpa["spec"]["minReplicas"] >= 2
    assert pdb["spec"]["selector"]["matchLabels"].items() <= pod["metadata"]["labels"].items()
    kustomization = load_all(K8S / "kustomization.yaml")[0]
    assert {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"} == set(kustomization["resources"])
