"""Scheduled rebuilds: the build flow served as a Prefect deployment with a cron schedule.

Prefect's ephemeral in-process server has no scheduler, so a schedule served against it never
fires. Without a PREFECT_API_URL (environment or profile) this module therefore starts a local
`prefect server start` (its scheduler on, the UI and analytics off) for as long as the deployment
is served, and stops it after.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import requests
from prefect.client.schemas.schedules import CronSchedule
from prefect.settings import PREFECT_API_URL, temporary_settings

from flows.build import build_flow
from mesed_build.config import load_config

DEFAULT_PORT = 4200


class ServeError(RuntimeError):
    """The schedule or the local Prefect server cannot be set up; the message says which and why."""


def check_cron(cron: str) -> None:
    try:
        CronSchedule(cron=cron)
    except ValueError as exc:
        raise ServeError(f"--cron {cron!r}: not a cron expression (expected five fields, e.g. "
                         f"'0 3 1,20 * *': minute hour day-of-month month day-of-week)") from exc


def _stop_with_parent() -> None:
    """In the server's child process: have Linux send it SIGTERM when `serve` dies, even by kill -9."""
    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def _port_is_free(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) != 0


@contextlib.contextmanager
def local_prefect_server(port: int = DEFAULT_PORT, startup_timeout_s: float = 180.0) -> Iterator[str]:
    """A `prefect server start` on 127.0.0.1:port with its scheduler, stopped on exit; yields its API URL."""
    if not _port_is_free(port):
        raise ServeError(f"127.0.0.1:{port} is in use: pass --port, or point PREFECT_API_URL at a running "
                         "Prefect server")
    log_path = Path(tempfile.gettempdir()) / f"mesed-build-prefect-server-{port}.log"
    log = log_path.open("ab")
    command = [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1", "--port", str(port),
               "--scheduler", "--no-ui", "--analytics-off"]
    server = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT,
                              preexec_fn=_stop_with_parent if sys.platform == "linux" else None)
    url = f"http://127.0.0.1:{port}/api"
    try:
        deadline = time.monotonic() + startup_timeout_s
        while True:
            if server.poll() is not None:
                raise ServeError(f"`{' '.join(command[1:])}` exited with {server.returncode} before it answered; "
                                 f"its output is in {log_path}")
            with contextlib.suppress(requests.RequestException):
                if requests.get(f"{url}/health", timeout=2).ok:
                    break
            if time.monotonic() > deadline:
                raise ServeError(f"the local Prefect server at {url} did not answer within {startup_timeout_s:.0f} s")
            time.sleep(0.5)
        yield url
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        log.close()


def serve(config_path: str, cron: str, name: str | None = None, port: int = DEFAULT_PORT) -> None:
    """Serve the build as a scheduled deployment until interrupted."""
    check_cron(cron)
    config = load_config(config_path)
    config_path = str(Path(config_path).resolve())  # scheduled runs may start in another directory

    def serve_deployment() -> None:
        build_flow.serve(
            name=name or f"rebuild-{config.name}",
            cron=cron,
            parameters={"config_path": config_path},
            description=f"Scheduled rebuild of {config.name} from {config_path}",
            tags=["mesed-build"],
        )

    if PREFECT_API_URL.value():  # from the environment or the active Prefect profile
        serve_deployment()
        return
    with local_prefect_server(port) as url, temporary_settings(updates={PREFECT_API_URL: url}):
        print(f"Prefect server with scheduler: {url} (stopped when this command stops)", flush=True)
        serve_deployment()
