"""Peak memory of the real server while it receives a 1 GiB dataset upload.

Starts `tuneforge server --port <free> --workspace <tmp>`, streams generated data (nothing is stored on the client
side) to POST /api/datasets/upload, samples the server process's RSS with psutil every 20 ms, and times /health
while the upload runs. Two runs: one 1 GiB file with a Content-Length, and 128 files of 8 MiB sent chunked
(no Content-Length). Usage: python bench/upload_memory.py [--gib 1]
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil

MIB = 1024 * 1024
TARGET_GROWTH_MIB = 64  # the server streams uploads to disk: its memory must not grow with the upload


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_server(workspace: Path, port: int) -> subprocess.Popen[bytes]:
    script = Path(sys.executable).with_name("tuneforge")
    fallback = [sys.executable, "-c", "from tuneforge.cli.main import main; main()"]
    command = [str(script)] if script.exists() else fallback
    command += ["server", "--host", "127.0.0.1", "--port", str(port), "--workspace", str(workspace)]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                return process
        except httpx.TransportError:
            time.sleep(0.2)
    process.kill()
    raise SystemExit("the server did not start")


class RssSampler(threading.Thread):
    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.process = psutil.Process(pid)
        self.peak = 0
        self.running = True

    def run(self) -> None:
        while self.running:
            self.peak = max(self.peak, self.process.memory_info().rss)
            time.sleep(0.02)


class HealthProbe(threading.Thread):
    """Times GET /health every 100 ms while the upload runs: the server must keep answering."""

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        self.url = url
        self.latencies: list[float] = []
        self.running = True

    def run(self) -> None:
        with httpx.Client(timeout=30) as client:
            while self.running:
                started = time.monotonic()
                client.get(f"{self.url}/health")
                self.latencies.append(time.monotonic() - started)
                time.sleep(0.1)


def body(files: list[tuple[str, int]], target: str, boundary: str) -> Iterator[bytes]:
    block = os.urandom(MIB)  # incompressible-looking data, generated once and repeated
    yield f'--{boundary}\r\nContent-Disposition: form-data; name="target_path"\r\n\r\n{target}\r\n'.encode()
    for name, size in files:
        yield (f'--{boundary}\r\nContent-Disposition: form-data; name="files[]"; filename="{name}"\r\n'
               "Content-Type: text/csv\r\n\r\n").encode()
        for _ in range(size // MIB):
            yield block
        yield b"\r\n"
    yield f"--{boundary}--\r\n".encode()


def run_case(url: str, pid: int, label: str, files: list[tuple[str, int]], with_length: bool) -> dict:
    boundary = secrets.token_hex(12)
    headers = {"Content-Type": f"multipart/form-data; boundary={boundary}"}
    if with_length:
        headers["Content-Length"] = str(sum(len(chunk) for chunk in body([(n, 0) for n, _ in files], "bench",
                                                                          boundary)) + sum(s for _, s in files))
    baseline = psutil.Process(pid).memory_info().rss
    sampler, probe = RssSampler(pid), HealthProbe(url)
    sampler.start()
    probe.start()
    started = time.monotonic()
    with httpx.Client(timeout=600) as client:
        response = client.post(f"{url}/api/datasets/upload", content=body(files, "bench", boundary), headers=headers)
    elapsed = time.monotonic() - started
    sampler.running = probe.running = False
    sampler.join()
    probe.join()
    response.raise_for_status()
    report = response.json()
    total = sum(size for _, size in files)
    return {"case": label, "bytes": total, "seconds": elapsed, "mib_per_s": total / MIB / elapsed,
            "rss_before_mib": baseline / MIB, "rss_peak_mib": sampler.peak / MIB,
            "rss_growth_mib": (sampler.peak - baseline) / MIB, "files_uploaded": report["files_uploaded"],
            "health_max_ms": max(probe.latencies, default=0) * 1000, "health_probes": len(probe.latencies)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gib", type=float, default=1.0, help="upload size per case in GiB")
    parser.add_argument("--quick", action="store_true", help="256 MiB per case")
    args = parser.parse_args()
    size = int((0.25 if args.quick else args.gib) * 1024) * MIB
    workspace = Path(tempfile.mkdtemp(prefix="tuneforge-bench-"))
    port = free_port()
    server = start_server(workspace, port)
    url = f"http://127.0.0.1:{port}"
    try:
        httpx.post(f"{url}/api/datasets/folders", data={"parent_path": "", "folder_name": "bench"}).raise_for_status()
        cases = [
            run_case(url, server.pid, "one file, Content-Length", [("big.csv", size)], with_length=True),
            run_case(url, server.pid, "128 files, chunked", [(f"part{i:03}.csv", size // 128) for i in range(128)],
                     with_length=False),
        ]
        for case in cases:
            print(f"{case['case']:26} {case['bytes'] / MIB:7.0f} MiB in {case['seconds']:5.1f} s "
                  f"({case['mib_per_s']:5.0f} MiB/s); server RSS {case['rss_before_mib']:.0f} MiB before, "
                  f"{case['rss_peak_mib']:.0f} MiB peak (+{case['rss_growth_mib']:.1f} MiB); "
                  f"{case['files_uploaded']} files stored; /health max {case['health_max_ms']:.0f} ms "
                  f"over {case['health_probes']} probes")
        stored = sum(p.stat().st_size for p in (workspace / "datasets" / "bench").iterdir())
        print(f"on disk: {stored / MIB:.0f} MiB in {len(list((workspace / 'datasets' / 'bench').iterdir()))} files")
        print(json.dumps({"bench": "upload_memory", "quick": args.quick, "cases": cases,
                          "target_rss_growth_mib": TARGET_GROWTH_MIB}))
    finally:
        server.terminate()
        server.wait(10)
        shutil.rmtree(workspace, ignore_errors=True)


if __name__ == "__main__":
    main()
