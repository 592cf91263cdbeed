"""N replicas racing for a limit of L admit exactly L: three OS processes, one Redis."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from collections import Counter
from pathlib import Path

from tests.redis_servers import RedisClusterServers, RedisServer

ROOT = Path(__file__).resolve().parents[3]
REPLICAS = 3
RPM = 20
PER_REPLICA = 30  # 90 admissions per team in all


def race(url: str, teams: list[str]) -> Counter[str]:
    start = time.time() + 2.0  # every replica imported and connected by then
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    command = [
        sys.executable,
        "-m",
        "tests.plugins.ratelimit.racer",
        url,
        str(start),
        str(RPM),
        str(PER_REPLICA),
    ]
    replicas = [
        subprocess.Popen(
            [*command, *teams], cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for _ in range(REPLICAS)
    ]
    total: Counter[str] = Counter()
    for replica in replicas:
        out, err = replica.communicate(timeout=60)
        assert replica.returncode == 0, err
        result = json.loads(out)
        assert result["errors"] == [], result["errors"]
        total.update(result["admitted"])
    return total


def test_three_replicas_admit_exactly_the_limit(redis_server: RedisServer) -> None:
    team = f"race-{uuid.uuid4().hex[:8]}"
    assert race(redis_server.url, [team]) == {team: RPM}


def test_three_replicas_on_a_cluster_are_exact_per_team(redis_cluster: RedisClusterServers) -> None:
    # Enough teams that their hash tags land on every node of the cluster.
    teams = [f"race-{uuid.uuid4().hex[:8]}" for _ in range(6)]
    assert race(redis_cluster.url, teams) == dict.fromkeys(teams, RPM)
