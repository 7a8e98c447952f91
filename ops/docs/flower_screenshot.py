"""A PNG of the Flower dashboard, taken with headless Chromium (Debian's `chromium` package).

    python -m ops.docs.flower_screenshot http://127.0.0.1:5555/ shot.png [--auth user:password]
    python -m ops.docs.flower_screenshot --demo ops/docs/flower-dashboard.png

`--demo` builds a small cross-encoder, runs `rerank-fleet up` on free ports with it, sends a few ranking
requests, waits until Flower lists the worker and the tasks, and photographs the dashboard: the picture
in the README comes from this command.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import httpx

CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--hide-scrollbars",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--virtual-time-budget=4000",  # let the page's scripts fill the worker table before the shot
]  # fmt: skip


def find_chromium() -> str | None:
    """The Chromium binary on PATH, if any."""
    return next((path for name in ("chromium", "chromium-browser") if (path := shutil.which(name))), None)


def take_screenshot(url: str, out: Path, *, auth: str | None = None, size: str = "1400,900", timeout: float = 90) -> Path:
    """Photograph `url` into `out` (PNG); `auth` is `user:password` for Flower's basic auth."""
    chromium = find_chromium()
    if chromium is None:
        raise RuntimeError("chromium is not installed (apt-get install chromium)")
    if auth:
        parts = urlsplit(url)
        url = urlunsplit(parts._replace(netloc=f"{auth}@{parts.netloc}"))
    out = Path(out).resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    out.unlink(missing_ok=True)
    with tempfile.TemporaryDirectory(prefix="chromium-") as profile:
        result = subprocess.run(
            [chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", f"--window-size={size}", f"--screenshot={out}", url],
            capture_output=True, text=True, timeout=timeout, check=False,
        )  # fmt: skip
    if not out.exists() or out.stat().st_size == 0:
        raise RuntimeError(f"chromium wrote no screenshot (exit {result.returncode}): {result.stderr[-2000:]}")
    return out


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_for(predicate, what: str, timeout: float, process: subprocess.Popen) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if process.poll() is not None:
            raise RuntimeError(f"rerank-fleet up exited with {process.returncode} while waiting for {what}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        time.sleep(0.5)


def demo(out: Path) -> Path:
    """Run a small fleet with `rerank-fleet up`, rank a few requests, and photograph its Flower dashboard."""
    from ops.models.builder import build_bert

    with tempfile.TemporaryDirectory(prefix="flower-demo-") as workdir:
        model = build_bert(Path(workdir) / "demo-reranker", seed=1)
        port, flower_port = _free_port(), _free_port()
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "RERANK_HEARTBEAT_INTERVAL": "1",
               "RERANK_DATA_DIR": str(Path(workdir) / "data")}  # a demo of its own: never the user's jobs
        env.pop("RERANK_FLOWER_BASIC_AUTH", None)
        up = subprocess.Popen(
            [sys.executable, "-m", "api.cli", "up", "--model", str(model), "--port", str(port), "--grpc-port", "0",
             "--flower-port", str(flower_port)],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            api, flower = f"http://127.0.0.1:{port}", f"http://127.0.0.1:{flower_port}"
            _wait_for(lambda: _answers(f"{api}/v1/health/ready"), "the API", 180, up)
            _wait_for(lambda: _answers(f"{flower}/healthcheck"), "Flower", 60, up)
            _wait_for(lambda: _dashboard_workers(flower), "Flower to see the worker", 60, up)
            for passages in (["The station is two blocks north.", "Bananas are yellow."], ["a", "b", "c"]):
                httpx.post(f"{api}/v1/ranking", timeout=30, json={
                    "model": "demo-reranker", "query": {"text": "which way is the station?"},
                    "passages": [{"text": text} for text in passages]})  # fmt: skip
            _wait_for(lambda: all(w.get("task-succeeded", 0) >= 2 for w in _dashboard_workers(flower)),
                      "Flower to count the tasks", 30, up)  # fmt: skip
            return take_screenshot(f"{flower}/", out)
        finally:
            up.send_signal(signal.SIGTERM)
            try:
                up.wait(timeout=60)
            except subprocess.TimeoutExpired:
                up.kill()


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def _dashboard_workers(flower: str) -> list[dict]:
    """The rows of Flower's worker table (what the dashboard shows)."""
    try:
        return list(httpx.get(f"{flower}/workers?json=1", timeout=5).json().get("data", []))
    except (httpx.HTTPError, ValueError):
        return []


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ops.docs.flower_screenshot", description=__doc__.splitlines()[0])
    parser.add_argument("url", nargs="?", help="Flower's address, e.g. http://127.0.0.1:5555/")
    parser.add_argument("out", type=Path, help="PNG file to write")
    parser.add_argument("--auth", help="user:password for Flower's basic auth")
    parser.add_argument("--demo", action="store_true", help="start a small fleet and photograph its dashboard")
    args = parser.parse_args(argv)
    if args.demo == bool(args.url):
        parser.error("give either a URL or --demo")
    path = demo(args.out) if args.demo else take_screenshot(args.url, args.out, auth=args.auth)
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
