"""`cloudcc simulate` against a real `cloudcc up`: it seeds its tenant, plays callers and
agents on the built-in switch and reports what the facts and commands on NATS showed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import running_instance

from deploy.natsserver import free_port

ROOT = Path(__file__).parent.parent
RATE, DURATION, CONCURRENCY, AGENTS = 5, 4, 20, 10


@pytest.fixture(scope="module")
def instance(nats_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    data = tmp_path_factory.mktemp("simulate")
    with running_instance(data, nats_url, free_port(), CLOUDCC_WRAP_UP_SECONDS="0"):
        yield data


def simulate(data: Path, *options: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "CLOUDCC_DATA": str(data)}
    env.pop("NATS_URL", None)  # it must find NATS through the instance's cloudcc.json
    return subprocess.run(
        [sys.executable, "-m", "deploy.cli", "simulate", *options],
        check=False,
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_a_simulated_rush_is_answered_and_measured(instance: Path) -> None:
    done = simulate(
        instance,
        *("--rate", str(RATE), "--duration", str(DURATION)),
        *("--concurrency", str(CONCURRENCY), "--agents", str(AGENTS), "--json"),
    )
    assert done.returncode == 0, done.stderr
    [line] = done.stdout.splitlines()  # exactly one JSON object
    report = json.loads(line)
    assert abs(report["offered"] - RATE * DURATION) <= 1, report
    assert report["answered"] > 0, report
    outcomes = ("answered", "abandoned", "left_in_ivr", "sent_to_fallback", "unresolved")
    assert sum(report[k] for k in outcomes) + report["not_placed"] == report["offered"], report
    assert 0 < report["max_concurrent"] <= CONCURRENCY, report
    assert report["errors"] == 0, (report, done.stderr[-2000:])
    assert report["routing_samples"] >= report["answered"], report
    assert 0 < report["routing_p50_ms"] <= report["routing_p99_ms"], report
    assert 0 < report["dispatch_p50_ms"] <= report["routing_p50_ms"], report
    assert report["blocked"] == 0, report
    assert sum(report["profiles"].values()) == report["offered"], report
    assert "offered" in done.stderr  # the progress lines


def test_without_a_running_instance_it_says_so_and_exits_2(tmp_path: Path) -> None:
    done = simulate(tmp_path, "--rate", "1", "--duration", "1", "--concurrency", "1", "--json")
    assert done.returncode == 2
    assert done.stdout == ""
    assert "not running" in done.stderr and str(tmp_path) in done.stderr
