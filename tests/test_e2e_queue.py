"""End to end on the CPU: the real server runs several real trainers within its limits, queues the rest in order, and
keeps its queue across a restart. Requests are the tutorial's queue section, as `curl` sends them."""

from __future__ import annotations

from pathlib import Path

import pytest

from e2e_support import kill_trainers, prepare_workspace, run_fields, start, wait_event, wait_final, wait_for
from serverproc import start_server

pytestmark = pytest.mark.e2e
ENV = "my-training-config"
LONG_RUN = 100_000  # steps: only a stop ends it


def create_environment(client, model: Path, output: Path) -> None:
    assert client.post("/api/configs/environments",
                       json={"name": ENV, "model_family": "pixart_sigma", "model_type": "lora"}).status_code == 201
    config = {k: v for k, v in run_fields(model, output, max_train_steps=4).items() if k.startswith("--")}
    assert client.put(f"/api/configs/{ENV}", json={"name": ENV, "config": config}).status_code == 200


def running(client) -> set[str]:
    return {e["job_id"] for e in client.get("/api/queue").json()["entries"] if e["status"] == "running"}


def test_jobs_run_side_by_side_within_the_limits_and_the_queue_survives_a_restart(tmp_path, tiny_pixart):
    workspace = tmp_path / "workspace"
    prepare_workspace(workspace)
    server = start_server(workspace)
    try:
        with server.client() as client:  # this machine, before setup: the tutorial's curl commands as written
            limits = client.post("/api/queue/concurrency",
                                 json={"local_gpu_max_concurrent": 6, "local_job_max_concurrent": 2})
            assert limits.json()["local_job_max_concurrent"] == 2, limits.text
            first = start(client, run_fields(tiny_pixart, tmp_path / "a", max_train_steps=LONG_RUN))
            second = start(client, run_fields(tiny_pixart, tmp_path / "b", max_train_steps=LONG_RUN))
            for job_id in (first, second):
                wait_event(client, job_id, lambda e: e["type"] == "training.progress", what="both to train")
            assert running(client) == {first, second}, "two trainers at the same time"
            assert client.get("/api/system/status?include_allocation=true").json()[
                "gpu_allocation"]["running_local_jobs"] == 2

            create_environment(client, tiny_pixart, tmp_path / "c")
            rejected = client.post("/api/queue/submit", json={"config_name": ENV, "no_wait": True}).json()
            assert rejected["status"] == "rejected" and "job slots" in rejected["reason"]
            third = client.post("/api/queue/submit", json={"config_name": ENV, "no_wait": False, "any_gpu": False})
            assert (third.json()["status"], third.json()["queue_position"]) == ("queued", 1), third.text
            assert client.get("/api/queue/stats").json()["local"]["pending_jobs"] == 1

            assert client.post(f"/api/jobs/{first}/stop").status_code == 200
            assert wait_final(client, first)["status"] == "stopped"
            assert wait_final(client, third.json()["job_id"])["status"] == "completed", "started when one ended"
            assert running(client) == {second}, "beside the second all along"

            assert client.post("/api/queue/concurrency", json={"local_job_max_concurrent": 1}).status_code == 200
            waiting = client.post("/api/queue/submit", json={"config_name": ENV}).json()
            assert waiting["status"] == "queued", waiting
        server.stop()

        server = start_server(workspace)
        with server.client() as client:
            line = client.get("/api/queue").json()["entries"]
            assert [(e["job_id"], e["status"]) for e in line] == [(second, "running"),
                                                                  (waiting["job_id"], "queued")], line
            assert client.post("/api/queue/concurrency", json={"local_job_max_concurrent": 2}).status_code == 200
            assert wait_final(client, waiting["job_id"])["status"] == "completed", "raising the limit started it"
            assert client.post(f"/api/jobs/{second}/stop").status_code == 200
            assert wait_final(client, second)["status"] == "stopped"
            wait_for(lambda: client.get("/api/queue").json()["count"] == 0, 30, "an empty queue")
    finally:
        server.stop()
        kill_trainers(workspace)
