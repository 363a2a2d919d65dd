"""`mesed-build serve`: the build flow as a cron-scheduled deployment on a Prefect server with a scheduler."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time

import pytest
import requests

from tests.conftest import DEMO_CONFIG
from tests.test_cli import ENV, cli


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_bad_cron_is_refused_before_any_server_starts(tmp_path):
    run = cli("serve", "--config", str(DEMO_CONFIG), "--cron", "0 3 1,20 *", prefect_home=tmp_path, timeout=120)
    assert run.returncode == 1 and "Traceback" not in run.stderr
    assert "--cron '0 3 1,20 *': not a cron expression" in run.stderr


def test_a_port_in_use_is_a_clear_error(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = {k: v for k, v in ENV.items() if k != "PREFECT_API_URL"}
        run = subprocess.run([sys.executable, "-m", "mesed_build", "serve", "--config", str(DEMO_CONFIG),
                              "--port", str(port)], capture_output=True, text=True, timeout=120,
                             env={**env, "PREFECT_HOME": str(tmp_path)})
    assert run.returncode == 1 and "Traceback" not in run.stderr
    assert f"127.0.0.1:{port} is in use" in run.stderr


@pytest.mark.slow
@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGKILL], ids=["sigterm", "kill-9"])
def test_serve_registers_the_schedule_and_the_server_schedules_runs(tmp_path, stop):
    port = free_port()
    api = f"http://127.0.0.1:{port}/api"
    env = {k: v for k, v in ENV.items() if k != "PREFECT_API_URL"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "mesed_build", "serve", "--config", str(DEMO_CONFIG), "--cron", "*/5 * * * *",
         "--name", "nightly", "--port", str(port)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env={**env, "PREFECT_HOME": str(tmp_path)})
    try:
        deadline = time.monotonic() + 240
        runs: list[dict] = []
        deployments: list[dict] = []
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                deployments = requests.post(f"{api}/deployments/filter", json={}, timeout=5).json()
                if deployments:
                    runs = requests.post(f"{api}/flow_runs/filter", json={
                        "deployments": {"id": {"any_": [deployments[0]["id"]]}}}, timeout=5).json()
            except requests.RequestException:
                pass  # the server is still starting
            if runs:
                break
            time.sleep(1)
        assert proc.poll() is None, proc.stdout.read()[-3000:]
        [deployment] = deployments
        assert deployment["name"] == "nightly"
        assert [s["schedule"]["cron"] for s in deployment["schedules"]] == ["*/5 * * * *"]
        assert deployment["parameters"] == {"config_path": str(DEMO_CONFIG.resolve())}
        # the server's scheduler, which the ephemeral server lacks, has put runs on the calendar
        assert runs and {r["state_type"] for r in runs} == {"SCHEDULED"}
        assert all(r["expected_start_time"][14:16] in {f"{m:02d}" for m in range(0, 60, 5)} for r in runs)
    finally:
        proc.send_signal(stop)
        proc.wait(timeout=60)
    # stopping `serve`, gracefully or not, stops the server it started
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            requests.get(f"{api}/health", timeout=2)
        except requests.ConnectionError:
            break
        time.sleep(1)
    else:
        pytest.fail(f"the Prefect server on port {port} outlived `serve` (stopped with {stop.name})")
