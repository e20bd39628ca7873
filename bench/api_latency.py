"""The API under load while a job trains: `GET /api/training/status` latency with 50 concurrent clients, the delay
from an event the trainer writes to a Server-Sent Events client receiving it, and what the load costs training.

Starts the real server on a tiny PixArt LoRA job that trains until stopped. First a quiet stretch (training alone,
an SSE client following the job), then a loaded one (the same, plus 50 clients each asking for the status once a
second, as 50 open dashboards do; `--back-to-back` makes them ask again as soon as they have the answer).
Event delay is the client's receive time minus the event's timestamp (written by the trainer when it wrote the
line). Training speed is the samples/s of the trainer's progress reports in each stretch. Targets on these two
cores: status p99 ≤ 25 ms; event → client p99 ≤ 100 ms; samples/s under load at least 95 % of quiet.

Usage, from the repository root:
    HF_HUB_OFFLINE=1 .venv/bin/python bench/api_latency.py [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from datetime import datetime
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from job_wall import ENV, prepare_workspace
from tuneforge.cli.demo.server import free_port, spawn

CLIENTS = 50
POLL_SECONDS = 1.0
TARGETS = {"status_p99_ms": 25.0, "event_p99_ms": 100.0, "samples_ratio": 0.95}


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))] if ordered else float("nan")


class Follower(threading.Thread):
    """An SSE client of the job: each event's delay, and each progress report's samples/s, by stretch."""

    def __init__(self, url: str, job_id: str, start: int) -> None:
        super().__init__(daemon=True)
        self.url, self.job_id, self.since = url, job_id, start
        self.stretch = "warm-up"
        self.delays: dict[str, list[float]] = {}
        self.speeds: dict[str, list[float]] = {}

    def run(self) -> None:
        params = {"job_id": self.job_id, "since_index": self.since}  # only what comes from now on
        with httpx.stream("GET", f"{self.url}/api/training/events/stream", params=params, timeout=None) as stream:
            for line in stream.iter_lines():
                if not line.startswith("data: "):
                    continue
                received = time.time()
                event = json.loads(line[6:])
                if not event.get("timestamp"):
                    continue
                written = datetime.fromisoformat(event["timestamp"].replace("Z", "+00:00")).timestamp()
                self.delays.setdefault(self.stretch, []).append(1000 * (received - written))
                telemetry = (event.get("progress") or {}).get("telemetry")
                if telemetry:
                    self.speeds.setdefault(self.stretch, []).append(telemetry["samples_per_second"])


async def hammer(url: str, seconds: float, pause: float) -> list[float]:
    """CLIENTS clients asking for the status every `pause` seconds (0: back to back), spread over the first
    second; latencies in ms."""
    latencies: list[float] = []
    deadline = time.monotonic() + seconds

    async def client(number: int) -> None:
        await asyncio.sleep(number / CLIENTS)
        async with httpx.AsyncClient(base_url=url, timeout=30) as http:
            while time.monotonic() < deadline:
                started = time.perf_counter()
                (await http.get("/api/training/status")).raise_for_status()
                took = time.perf_counter() - started
                latencies.append(1000 * took)
                await asyncio.sleep(max(0.0, pause - took))

    await asyncio.gather(*(client(number) for number in range(CLIENTS)))
    return latencies


def measure(workspace: Path, root: Path, seconds: float, pause: float) -> dict:
    server = spawn(workspace, free_port(), env={**os.environ, "HF_HUB_OFFLINE": "1"}, log_path=root / "server.log")
    try:
        server.wait_healthy(60)
        with server.client() as client:  # this machine, before setup: the local admin
            job_id = client.post("/api/queue/submit", json={"config_name": ENV}).json()["job_id"]
            while not (client.get(f"/api/jobs/{job_id}").json().get("progress") or {}).get("step"):
                time.sleep(0.2)
            start = client.get(f"/api/jobs/{job_id}/metrics").json()["next_index"]
            follower = Follower(server.url, job_id, start)
            follower.start()
            time.sleep(2)
            follower.stretch = "quiet"
            time.sleep(seconds)
            follower.stretch = "loaded"
            latencies = asyncio.run(hammer(server.url, seconds, pause))
            follower.stretch = "after"
            client.post(f"/api/jobs/{job_id}/cancel")
    finally:
        server.stop()
    quiet, loaded = (statistics.median(follower.speeds.get(s) or [float("nan")]) for s in ("quiet", "loaded"))
    delays = follower.delays.get("quiet", []) + follower.delays.get("loaded", [])
    return {"requests": len(latencies), "status_p50_ms": percentile(latencies, 0.5),
            "status_p99_ms": percentile(latencies, 0.99), "events": len(delays),
            "event_p50_ms": percentile(delays, 0.5), "event_p99_ms": percentile(delays, 0.99),
            "samples_per_second_quiet": quiet, "samples_per_second_loaded": loaded,
            "samples_ratio": loaded / quiet if quiet else float("nan"), "targets": TARGETS}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="10 s stretches instead of 30 s")
    parser.add_argument("--back-to-back", action="store_true", help="clients ask again at once, not once a second")
    args = parser.parse_args()
    pause = 0.0 if args.back_to_back else POLL_SECONDS
    with tempfile.TemporaryDirectory(prefix="tuneforge-bench-") as scratch:
        root = Path(scratch)
        result = measure(prepare_workspace(root, 10**6), root, 10 if args.quick else 30, pause)
    print(f"{'':<28}{'p50':>10}{'p99':>10}{'target p99':>12}")
    print(f"{'GET /api/training/status':<28}{result['status_p50_ms']:>8.1f}ms{result['status_p99_ms']:>8.1f}ms"
          f"{TARGETS['status_p99_ms']:>10.0f}ms   ({result['requests']} requests, {CLIENTS} clients, "
          f"{'back to back' if not pause else f'each every {pause:g} s'})")
    print(f"{'event → SSE client':<28}{result['event_p50_ms']:>8.1f}ms{result['event_p99_ms']:>8.1f}ms"
          f"{TARGETS['event_p99_ms']:>10.0f}ms   ({result['events']} events)")
    print(f"training samples/s: quiet {result['samples_per_second_quiet']:.1f}, under load "
          f"{result['samples_per_second_loaded']:.1f} ({100 * result['samples_ratio']:.0f} %; target ≥ "
          f"{100 * TARGETS['samples_ratio']:.0f} %)")
    print(json.dumps({"bench": "api_latency", "quick": args.quick, "clients": CLIENTS, "poll_seconds": pause,
                      **result}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
