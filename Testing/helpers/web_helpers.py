"""Helpers for the SegNets Web end-to-end test: system Chromium, the server process, state waits, aiming.

Nothing here sleeps for a fixed time to let the page catch up: every wait polls the server's
``/segnets/status.json`` (or the page) until a condition holds or a deadline passes.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def ensure_chromium() -> Path:
    """Debian's Chromium, installed with apt-get when missing (never a Playwright browser download)."""
    if not CHROMIUM.exists():
        if shutil.which("apt-get") is None or os.geteuid() != 0:
            raise RuntimeError(
                "Chromium is missing and cannot be installed here: run `apt-get install -y chromium` as root"
            )
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(["apt-get", "update"], check=True, env=env, stdout=subprocess.DEVNULL)
        subprocess.run(
            ["apt-get", "install", "-y", "--no-install-recommends", "chromium"],
            check=True,
            env=env,
            stdout=subprocess.DEVNULL,
        )
    return CHROMIUM


def ensure_playwright() -> None:
    """Playwright's Python package (the driver only; the browser is the system Chromium)."""
    if importlib.util.find_spec("playwright") is None:
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "playwright>=1.40"], check=True)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until(condition: Callable[[], Any], timeout: float, what: str, interval: float = 0.5) -> Any:
    """Poll ``condition`` until it returns something truthy; return that, or raise after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            value = condition()
        except Exception as error:  # noqa: BLE001 - the server may not answer yet
            last_error, value = error, None
        if value:
            return value
        time.sleep(interval)
    raise TimeoutError(
        f"timed out after {timeout:.0f} s waiting for {what}" + (f" (last error: {last_error})" if last_error else "")
    )


class WebServer:
    """``segnets web --status-endpoint`` as a subprocess on a free 127.0.0.1 port; stopped by its pid."""

    def __init__(
        self,
        log_path: Path,
        env: dict[str, str] | None = None,
        extra_args: list[str] | None = None,
        entry: list[str] | None = None,
    ):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/"
        self.log_path = log_path
        command = [
            sys.executable,
            *(entry or ["-m", "SegNetsLib.cli"]),
            "web",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--status-endpoint",
            *(extra_args or []),
        ]
        self._log = open(log_path, "wb")
        self.process = subprocess.Popen(
            command,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
            start_new_session=True,
        )

    def status(self) -> dict[str, Any]:
        with urllib.request.urlopen(self.url + "segnets/status.json", timeout=20) as answer:
            return json.loads(answer.read())

    def wait_ready(self, timeout: float = 120) -> None:
        def ready():
            if self.process.poll() is not None:
                raise AssertionError(f"the server exited early:\n{self.log_tail()}")
            return self.status()

        try:
            wait_until(ready, timeout, "the server to answer")
        except TimeoutError as error:
            raise TimeoutError(f"{error}\n{self.log_tail()}") from None

    def wait_for(self, condition: Callable[[dict[str, Any]], Any], timeout: float, what: str) -> dict[str, Any]:
        """Poll the status until ``condition(status)`` is truthy; return that status."""
        found: dict[str, Any] = {}

        def check():
            if self.process.poll() is not None:
                raise AssertionError(f"the server died:\n{self.log_tail()}")
            status = self.status()
            if condition(status):
                found.update(status)
                return True
            return False

        try:
            wait_until(check, timeout, what)
        except TimeoutError as error:
            raise TimeoutError(f"{error}; last status: {json.dumps(self.status())[:2000]}") from None
        return found

    def log_tail(self, chars: int = 4000) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")[-chars:]

    def stop(self) -> None:
        """Stop the server's process group by its id (SIGTERM, then SIGKILL)."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=10)
        self._log.close()


def ras_to_view_xy(view: dict[str, Any], ras: np.ndarray) -> np.ndarray:
    """RAS points (N, 3) -> slice-view pixel coordinates (N, 2), origin bottom-left (VTK display)."""
    xy_to_ras = np.array(view["xy_to_ras"])
    points = np.c_[ras, np.ones(len(ras))]
    xy = (np.linalg.inv(xy_to_ras) @ points.T).T
    return xy[:, :2]


def ijk_to_ras(volume: dict[str, Any], ijk: np.ndarray) -> np.ndarray:
    """Voxel indices (N, 3) as (i, j, k) -> RAS millimetres (N, 3) of the loaded volume node."""
    matrix = np.array(volume["ijk_to_ras"])
    return (matrix @ np.c_[ijk, np.ones(len(ijk))].T).T[:, :3]


def serpentine_path(mask_ji: np.ndarray, row_step: int) -> list[tuple[int, int]]:
    """A zig-zag through every ``row_step``-th row of a 2D mask [j, i]: (i, j) points, run ends only."""
    rows = [j for j in range(mask_ji.shape[0]) if mask_ji[j].any()][::row_step]
    path: list[tuple[int, int]] = []
    for n, j in enumerate(rows):
        columns = np.flatnonzero(mask_ji[j])
        ends = [(int(columns[0]), j), (int(columns[-1]), j)]
        path.extend(ends if n % 2 == 0 else ends[::-1])
    return path


def dice(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.astype(bool), b.astype(bool)
    total = a.sum() + b.sum()
    return float(2.0 * (a & b).sum() / total) if total else 1.0
