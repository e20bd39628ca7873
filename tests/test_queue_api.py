"""The queue over the real app, with a process that stands for a running trainer (no trainer launched): limits,
submit outcomes, positions, priorities, permissions and bad input. Devices of made-up machines for `want_of`."""

from __future__ import annotations

from pathlib import Path

import pytest

from e2e_support import prepare_workspace, run_fields
from scheduler_support import add_running_stand_in
from tuneforge.scheduler import launcher
from tuneforge.services import queue
from tuneforge.services.devices import Gpu
from tuneforge.services.placement import Limits

pytestmark = pytest.mark.both_databases
ENV = "my-training-config"


@pytest.fixture
def environment(admin_client, workspace: Path, tiny_pixart: Path, tmp_path: Path) -> str:
    """The tutorial's `my-training-config`: a valid tiny PixArt LoRA environment."""
    prepare_workspace(workspace)
    created = admin_client.post("/api/configs/environments",
                                json={"name": ENV, "model_family": "pixart_sigma", "model_type": "lora"})
    assert created.status_code == 201, created.text
    config = {name: value for name, value in run_fields(tiny_pixart, tmp_path / "out").items()
              if name.startswith("--")}
    saved = admin_client.put(f"/api/configs/{ENV}", json={"name": ENV, "config": config})
    assert saved.status_code == 200, saved.text
    assert admin_client.post(f"/api/configs/{ENV}/activate").status_code == 200
    return ENV


@pytest.fixture
def busy(app, tmp_path) -> str:
    """A running job (this test process stands for its trainer): the default limit of one job is reached."""
    return add_running_stand_in(app.state.session_factory, tmp_path)


def submit(client, **body):
    return client.post("/api/queue/submit", json={"config_name": ENV, **body})


def test_tutorial_limits_and_stats(admin_client, make_user):
    stats = admin_client.get("/api/queue/stats").json()
    assert (stats["local_gpu_max_concurrent"], stats["local_job_max_concurrent"]) == (None, 1)
    assert stats["local"] == {"running_jobs": 0, "pending_jobs": 0, "allocated_gpus": [], "available_gpus": [],
                              "total_gpus": 0}
    changed = admin_client.post("/api/queue/concurrency",
                                json={"local_gpu_max_concurrent": 6, "local_job_max_concurrent": 2})
    assert changed.json() == {"success": True, "local_gpu_max_concurrent": 6, "local_job_max_concurrent": 2}
    only_jobs = admin_client.post("/api/queue/concurrency", json={"local_job_max_concurrent": 3}).json()
    assert (only_jobs["local_gpu_max_concurrent"], only_jobs["local_job_max_concurrent"]) == (6, 3), "rest kept"
    unlimited = admin_client.post("/api/queue/concurrency", json={"local_gpu_max_concurrent": None}).json()
    assert unlimited["local_gpu_max_concurrent"] is None
    null = admin_client.post("/api/queue/concurrency", json={"local_job_max_concurrent": None})
    assert null.status_code == 422 and null.json()["errors"][0]["field"] == "local_job_max_concurrent", null.text
    below = admin_client.post("/api/queue/concurrency", json={"local_job_max_concurrent": -1})
    assert below.status_code == 422 and below.json()["errors"][0]["field"] == "local_job_max_concurrent"
    researcher = make_user("res", "researcher")
    assert researcher.post("/api/queue/concurrency", json={"local_job_max_concurrent": 9}).status_code == 403
    assert admin_client.get("/api/queue/stats").json()["local_job_max_concurrent"] == 3


def test_system_status_with_allocation(admin_client):
    status = admin_client.get("/api/system/status", params={"include_allocation": "true"}).json()
    assert 0 <= status["memory_percent"] <= 100 and status["cpu_count"] >= 1
    allocation, indexes = status["gpu_allocation"], [gpu["index"] for gpu in status["gpus"]]  # none on CPU machines
    assert (allocation["allocated_gpus"], allocation["running_local_jobs"]) == ([], 0), "nothing runs yet"
    assert allocation["available_gpus"] == indexes == [device["index"] for device in allocation["devices"]]
    assert not any(device["allocated"] for device in allocation["devices"])
    assert admin_client.get("/api/system/status").json()["gpu_allocation"] is None


def test_a_full_queue_queues_in_order_and_no_wait_is_rejected(admin_client, environment, busy):
    rejected = submit(admin_client, no_wait=True).json()
    assert (rejected["success"], rejected["status"], rejected["job_id"]) == (False, "rejected", None)
    assert "job slots" in rejected["reason"]
    first = submit(admin_client).json()
    assert (first["status"], first["queue_position"]) == ("queued", 1), first
    started = admin_client.post("/api/training/start", data={"--max_train_steps": "3"})
    assert started.status_code == 202, started.text
    second = started.json()
    assert (second["status"], second["queue_position"]) == ("queued", 2)
    line = admin_client.get("/api/queue").json()["entries"]
    assert [(e["job_id"], e["status"], e["queue_position"]) for e in line] == [
        (busy, "starting", None), (first["job_id"], "queued", 1), (second["job_id"], "queued", 2)]
    status = admin_client.get("/api/training/status").json()
    assert status["job_id"] == second["job_id"], "the caller's own most recent job (the running one is not theirs)"
    assert [j["job_id"] for j in status["running_jobs"]] == [busy]

    moved = admin_client.post(f"/api/queue/{second['job_id']}/priority", json={"priority": 10})
    assert moved.status_code == 200 and moved.json()["queue_position"] == 1
    assert admin_client.post(f"/api/queue/{busy}/priority", json={"priority": 1}).status_code == 409
    assert admin_client.post(f"/api/queue/{first['job_id']}/cancel").json()["status"] == "cancelled"
    assert [e["job_id"] for e in admin_client.get("/api/queue").json()["entries"]] == [busy, second["job_id"]]


def test_dry_run_says_what_would_happen_and_queues_nothing(admin_client, environment):
    dry = submit(admin_client, dry_run=True).json()
    assert (dry["success"], dry["status"], dry["job_id"]) == (True, "would_run", None)
    assert "on the CPU" in dry["message"]
    assert admin_client.get("/api/queue").json()["count"] == 0
    assert admin_client.get("/api/jobs").json()["count"] == 0


def test_bad_submissions_are_clear_and_change_nothing(admin_client, environment, make_user, busy):
    unknown = admin_client.post("/api/queue/submit", json={"config_name": "nope"})
    assert unknown.status_code == 404 and "nope" in unknown.json()["detail"]
    no_gpu = admin_client.post("/api/training/start", data={"--gpu_ids": "0,1"})
    assert no_gpu.status_code == 422, no_gpu.text
    assert "do not exist on this machine (GPUs: none)" in no_gpu.json()["detail"]
    assert no_gpu.json()["errors"][0]["field"] == "gpu_ids"
    twice = admin_client.post("/api/training/start", data={"--gpu_ids": "0,0"})
    assert twice.status_code == 422 and "names a GPU twice" in twice.text
    viewer = make_user("viewer1", "viewer")
    assert submit(viewer).status_code == 403
    researcher = make_user("res2", "researcher")
    assert submit(researcher, priority=5).status_code == 403, "priorities are for leads and admins"
    assert researcher.post(f"/api/queue/{busy}/cancel").status_code == 403, "someone else's job"
    assert researcher.post("/api/queue/submit", json={"config_name": ENV, "surprise": 1}).status_code == 422
    assert admin_client.get("/api/queue").json()["count"] == 1, "only the running job"


def test_a_researcher_steers_their_own_current_job(admin_client, environment, make_user, busy):
    researcher = make_user("res3", "researcher")
    mine = submit(researcher).json()["job_id"]
    assert researcher.post("/api/training/cancel").json()["job_id"] == mine, "their own job is their current one"
    assert admin_client.get(f"/api/jobs/{busy}").json()["status"] == "starting"


def gpus(count: int) -> list[Gpu]:
    return [Gpu(index, str(index), "H200", 141 * 1024**3) for index in range(count)]


def test_what_a_config_asks_for_on_made_up_machines(tmp_path):
    assert queue.want_of({"num_processes": 2}, [], any_gpu=False) == (0, None), "CPU machine"
    assert queue.want_of({"num_processes": 2}, gpus(8), any_gpu=False) == (2, None)
    assert queue.want_of({"gpu_ids": [3, 5]}, gpus(8), any_gpu=False) == (2, [3, 5])
    assert queue.want_of({"gpu_ids": [3, 5]}, gpus(8), any_gpu=True) == (2, None)
    accelerate = tmp_path / "accelerate.yaml"
    accelerate.write_text("compute_environment: LOCAL_MACHINE\ngpu_ids: 1,2,3\nnum_processes: 3\n")
    assert queue.want_of({"accelerate_config": str(accelerate)}, gpus(8), any_gpu=False) == (3, [1, 2, 3])
    accelerate.write_text("gpu_ids: all\n")
    assert queue.want_of({"accelerate_config": str(accelerate), "num_processes": 4}, gpus(8), False) == (4, None)
    with pytest.raises(Exception, match="needs 9 GPU"):
        queue.ensure_can_ever_run(9, None, gpus(8), Limits())


def test_trainers_see_their_leased_gpus_by_the_servers_own_names():
    renamed = [Gpu(0, "2", "A100", 1), Gpu(1, "GPU-abc", "A100", 1), Gpu(2, "7", "A100", 1)]
    assert queue.cuda_visible_devices((0, 2), renamed) == "2,7"
    assert queue.cuda_visible_devices((1,), renamed) == "GPU-abc"
    assert queue.cuda_visible_devices((), renamed) == "", "a CPU job sees no GPU"


def test_resume_needs_an_ended_job_with_a_checkpoint(admin_client, environment, busy, make_user):
    assert admin_client.post(f"/api/jobs/{busy}/resume").status_code == 409, "still running"
    queued = submit(admin_client).json()["job_id"]
    admin_client.post(f"/api/queue/{queued}/cancel")
    refused = admin_client.post(f"/api/jobs/{queued}/resume")
    assert refused.status_code == 409 and "no checkpoint" in refused.json()["detail"]
    assert admin_client.post("/api/jobs/nope/resume").status_code == 404
    assert make_user("res4", "researcher").post(f"/api/jobs/{queued}/resume").status_code == 403, "not theirs"


def test_a_multi_process_trainer_keeps_to_its_lease_whatever_its_accelerate_file_says(tmp_path):
    command = launcher.trainer_command(tmp_path, 2, str(tmp_path / "accelerate.yaml"))
    assert command[command.index("--gpu_ids") + 1] == "all", "accelerate would set CUDA_VISIBLE_DEVICES itself"
