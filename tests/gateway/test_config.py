"""gateway.yaml: the schema, ${VAR} expansion, and every error named by its YAML path."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

import pytest

from gateway.config import ConfigError, key_digest, load, parse

ROOT = Path(__file__).resolve().parents[2]

MINIMAL = """
deployments:
  - {name: d1, dialect: openai, url: "https://api.openai.com/v1", model: gpt-4o, api_key: "${OPENAI_KEY}"}
models:
  gpt-4o: {deployments: [d1]}
teams:
  research: {keys: ["${RESEARCH_KEY}"], limits: {rpm: 600, tokens_per_day: 5000000}, models: [gpt-4o]}
"""


def test_shipped_config_is_valid() -> None:
    config = load(ROOT / "gateway.yaml")
    assert config.store.url == "memory://"
    assert set(config.models) == {"gpt-4o", "llama"}
    assert config.simulator is not None


def test_env_expansion_and_hashed_keys() -> None:
    config = parse(MINIMAL, environ={"OPENAI_KEY": "sk-upstream", "RESEARCH_KEY": "team-key"})
    assert config.deployments["d1"].api_key == "sk-upstream"
    team = config.teams["research"]
    assert team.key_digests == (key_digest("team-key"),)
    assert config.keys[key_digest("team-key")] is team
    assert team.limits.rpm == 600 and team.limits.tpm is None
    # Secrets stay out of reprs, so they cannot leak through a log of the config.
    assert "sk-upstream" not in repr(config) and "team-key" not in repr(config)


def test_sha256_keys_are_taken_as_digests() -> None:
    digest = hashlib.sha256(b"k").hexdigest()
    text = MINIMAL.replace('"${RESEARCH_KEY}"', f'"sha256:{digest}"')
    config = parse(text, environ={"OPENAI_KEY": "x"})
    assert config.teams["research"].key_digests == (bytes.fromhex(digest),)


def test_every_error_is_reported_with_its_path() -> None:
    text = """
server: {port: "eighty", workers: 2, bogus: 1}
store: {url: "memory://", on_error: sometimes}
deployments:
  - {name: a, dialect: azure, url: "ftp://x", api_key: "${MISSING}", api_version: "2024/10/21"}
  - {name: b, dialect: martian, url: "https://b", api_key: k}
models:
  m: {deployments: [a, ghost]}
teams:
  t: {keys: [k1], models: [nope], limits: {rpm: -1}}
"""
    with pytest.raises(ConfigError) as err:
        parse(text, environ={})
    errors = "\n".join(err.value.errors)
    for expected in (
        "server.port: expected an integer",
        "server.bogus: unknown key",
        "store.on_error: must be one of open, closed",
        "deployments[0].url: expected an http(s) URL",
        "deployments[0].api_key: environment variable MISSING is not set",
        "deployments[0].api_version: expected YYYY-MM-DD",
        "deployments[0].deployment: is required for an azure deployment",
        "deployments[1].dialect: must be one of openai, azure, foundry",
        "models.m.deployments[1]: deployment 'ghost' is not defined",
        "teams.t.models[0]: model 'nope' is not defined",
        "teams.t.limits.rpm: must be at least 0",
        "store.url: memory:// keeps counters per process",
    ):
        assert expected in errors, f"{expected!r} not in:\n{errors}"


def test_a_key_shared_by_two_teams_is_an_error() -> None:
    text = MINIMAL + '  other: {keys: ["${RESEARCH_KEY}"]}\n'
    with pytest.raises(ConfigError, match=r"teams.other.keys\[0\]: this key is already used by team 'research'"):
        parse(text, environ={"OPENAI_KEY": "x", "RESEARCH_KEY": "same"})


def test_check_config_cli(tmp_path: Path) -> None:
    ok = subprocess.run(
        [sys.executable, "-m", "gateway", "check-config", str(ROOT / "gateway.yaml")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert ok.returncode == 0, ok.stderr
    assert "3 deployments, 2 models, 1 teams" in ok.stdout
    bad = tmp_path / "bad.yaml"
    bad.write_text("deployments: []\nmodels: {m: {deployments: [x]}}\nteams: {t: {keys: []}}\nextra: 1\n")
    result = subprocess.run(
        [sys.executable, "-m", "gateway", "check-config", str(bad)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 1
    assert "$.extra: unknown key" in result.stderr
    assert "models.m.deployments[0]: deployment 'x' is not defined" in result.stderr
    assert "teams.t.keys: expected a non-empty list of keys" in result.stderr


def test_logging_and_metrics_sections() -> None:
    environ = {"OPENAI_KEY": "x", "RESEARCH_KEY": "k"}
    defaults = parse(MINIMAL, environ=environ)
    assert (defaults.logging.level, defaults.logging.format) == ("info", "json")
    assert defaults.metrics.port is None
    text = MINIMAL + "logging: {level: debug, format: console}\nmetrics: {port: 9102, host: 0.0.0.0}\n"
    config = parse(text, environ=environ)
    assert (config.logging.level, config.logging.format) == ("debug", "console")
    assert (config.metrics.port, config.metrics.host) == (9102, "0.0.0.0")


def test_logging_and_metrics_errors_name_their_paths() -> None:
    text = MINIMAL + "logging: {level: loud, format: xml, color: true}\nmetrics: {port: 8080}\n"
    with pytest.raises(ConfigError) as err:
        parse(text, environ={"OPENAI_KEY": "x", "RESEARCH_KEY": "k"})
    errors = "\n".join(err.value.errors)
    assert "logging.level: must be one of debug, info, warning, error, got 'loud'" in errors
    assert "logging.format: must be one of json, console, got 'xml'" in errors
    assert "logging.color: unknown key" in errors
    assert "metrics.port: must differ from server.port (8080)" in errors
    with pytest.raises(ConfigError) as err:
        parse(MINIMAL + "metrics: {port: 70000}\n", environ={"OPENAI_KEY": "x", "RESEARCH_KEY": "k"})
    assert "metrics.port: must be at most 65535" in err.value.errors[0]


def test_server_hardening_keys_have_defaults_and_named_errors() -> None:
    config = parse(MINIMAL, environ={"OPENAI_KEY": "x", "RESEARCH_KEY": "k"})
    server = config.server
    assert (server.header_timeout_s, server.body_timeout_s, server.keepalive_timeout_s) == (10.0, 30.0, 75.0)
    assert (server.max_header_line_bytes, server.max_headers) == (8190, 100)
    bad = (
        "server: {header_timeout_s: 0, body_timeout_s: soon, keepalive_timeout_s: -1,"
        " max_header_line_bytes: 10, max_headers: 1.5}\n" + MINIMAL
    )
    with pytest.raises(ConfigError) as err:
        parse(bad, environ={"OPENAI_KEY": "x", "RESEARCH_KEY": "k"})
    errors = "\n".join(err.value.errors)
    for expected in (
        "server.header_timeout_s: must be at least 0.001",
        "server.body_timeout_s: expected a number",
        "server.keepalive_timeout_s: must be at least 0.001",
        "server.max_header_line_bytes: must be at least 256",
        "server.max_headers: expected an integer",
    ):
        assert expected in errors, f"{expected!r} not in:\n{errors}"
