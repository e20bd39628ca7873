"""End to end: the real server process drives the real trainer process on a tiny PixArt Sigma model."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from safetensors.torch import load_file
from websockets.sync.client import connect

from e2e_support import (
    all_events,
    as_multipart,
    job,
    kill_trainers,
    prepare_workspace,
    progress_steps,
    run_fields,
    start,
    trainer_process,
    wait_event,
    wait_final,
    wait_for,
)
from serverproc import ServerProcess, free_port, start_server
from webhook_receiver import Receiver

ADMIN = {"email": "admin@example.com", "username": "admin", "password": "admin-password-12"}
LORA_FILE = "pytorch_lora_weights.safetensors"
LONG_RUN = 100_000  # steps: a job that only ends when a test ends it


@dataclass
class Stack:
    server: ServerProcess
    model: Path
    admin_key: str
    researcher_key: str

    def client(self, key: str | None = None):
        return self.server.client(headers={"X-API-Key": key or self.admin_key})


@pytest.fixture(scope="module")
def stack(tmp_path_factory, tiny_pixart):
    """One server on one workspace for the module, with an admin and a researcher. Each test ends its jobs (so
    the next can start one); trainers a failed test left behind are killed at the end."""
    workspace = tmp_path_factory.mktemp("e2e") / "workspace"
    prepare_workspace(workspace)
    server = start_server(workspace)
    try:
        admin = login_key(server, ADMIN, create=lambda http: http.post("/api/cloud/auth/setup/first-admin", json=ADMIN))
        researcher = {"email": "r@example.com", "username": "researcher", "password": "researcher-password-1",
                      "level_names": ["researcher"]}
        researcher_key = login_key(server, researcher, create=lambda http: http.post(
            "/api/users", json=researcher, headers={"X-API-Key": admin}))
        yield Stack(server, tiny_pixart, admin, researcher_key)
    finally:
        server.stop()
        kill_trainers(workspace)


def login_key(server: ServerProcess, user: dict, create=None) -> str:
    """Create the user (optionally), log in as them and return a new API key of theirs."""
    with server.client() as http:
        if create:
            assert create(http).status_code == 201
        login = http.post("/api/cloud/auth/login", json={"username": user["username"], "password": user["password"]})
        assert login.is_success, login.text
        return http.post("/api/cloud/auth/api-keys", json={"name": "e2e"}).json()["key"]


def assert_gap_free(events: list[dict]) -> None:
    assert [e["index"] for e in events] == list(range(len(events)))


def sse_events(client, job_id: str, headers: dict | None = None) -> list[dict]:
    """Read the SSE stream until the server ends it (the job is over and drained)."""
    events = []
    with client.stream("GET", "/api/training/events/stream", params={"job_id": job_id}, headers=headers,
                       timeout=120) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        for line in response.iter_lines():
            if line.startswith("data: ") and line != "data: {}":
                events.append(json.loads(line[len("data: "):]))
    return events


def test_fast_path_streams_webhooks_previews_and_outputs(stack, tmp_path):
    server, model = stack.server, stack.model
    refused = f"http://127.0.0.1:{free_port()}/nobody-listens"
    with Receiver(fail_first=1) as receiver, stack.client() as client:
        hooks = [{"webhook_type": "raw", "callback_url": receiver.url, "log_level": "info", "ssl_no_verify": False},
                 {"webhook_type": "raw", "callback_url": refused, "auth_token": "hook-token-never-shown"}]
        fields = run_fields(model, tmp_path / "out", checkpoint_step_interval=6, validation_step_interval=6,
                            validation_preview="true", validation_preview_steps=2,
                            webhook_config=json.dumps(hooks), webhook_reporting_interval=10)
        valid = client.post("/api/training/validate", files=as_multipart(fields))
        assert valid.status_code == 200 and valid.json()["valid"], valid.text

        job_id = start(client, fields)
        second = client.post("/api/training/start", files=as_multipart(fields))  # one job at a time by default
        assert second.status_code == 202 and second.json()["status"] == "queued", second.text
        assert second.json()["queue_position"] == 1 and "job slots" in second.json()["message"]
        waiting = second.json()["job_id"]
        assert client.post(f"/api/queue/{waiting}/cancel").json()["status"] == "cancelled"
        ws_url = server.url.replace("http", "ws") + f"/api/training/events/stream?job_id={job_id}"
        with client.stream("GET", "/api/training/events/stream", params={"job_id": job_id}) as dropped:
            next(dropped.iter_lines())  # then hang up mid-stream
        with connect(ws_url, additional_headers={"X-API-Key": stack.admin_key}) as socket:
            socket.recv()  # likewise
        streamed = sse_events(client, job_id)
        info = wait_final(client, job_id)
        assert info["status"] == "completed", info

        events = all_events(client, job_id)
        assert_gap_free(events)
        assert streamed == events
        with connect(ws_url, additional_headers={"X-API-Key": stack.admin_key}) as socket:
            over_ws = [json.loads(message)["event"] for message in socket]
        assert over_ws == events
        assert sse_events(client, job_id, headers={"Last-Event-ID": "5"}) == events[6:]
        status = client.get("/api/training/status").json()  # none active: the latest job, the one cancelled
        assert (status["job_id"], status["status"], status["running_jobs"]) == (waiting, "cancelled", [])
        assert progress_steps(events)[-1] == 12

        previews = [e for e in events if e["type"] == "validation.image"]
        assert previews, "validation_preview=true sends validation.image events"
        assert {"type", "title", "body", "data", "images"} <= previews[0].keys()
        assert previews[0]["data"]["validation_type"] == "intermediary"
        assert {p["data"]["step_label"] for p in previews} == {"1/3", "3/3"}
        assert previews[0]["images"][0]["src"].startswith("data:image/png;base64,")
        assert previews[0]["data"]["resolution"] == [64, 64]

        validations = [e for e in events if e["type"] == "training.validation"]
        assert [e["data"]["step"] for e in validations] == [6, 12]
        assert all(Path(path).is_file() for e in validations for path in e["data"]["paths"])
        names = [c["name"] for c in client.get("/api/training/checkpoints").json()["checkpoints"]]
        assert {"checkpoint-6", "checkpoint-12"} <= set(names)
        assert (tmp_path / "out" / LORA_FILE).is_file()

        lifecycle = [e for e in events if e["type"] in ("lifecycle.stage", "training.status", "training.checkpoint")]
        wanted = {f"{job_id}:{e['index']}" for e in lifecycle}
        wait_for(lambda: wanted <= {d.event_id for d in receiver.accepted()}, 60, "webhook deliveries")
        accepted = [d.event_id for d in receiver.accepted()]
        assert len(accepted) == len(set(accepted)), "each event is accepted once"
        failed = [d for d in receiver.deliveries if d.status == 500]
        assert len(failed) == 1 and failed[0].event_id in accepted, "the failed delivery was retried"
        key = (server.workspace / ".tuneforge" / "webhook_secret").read_text().strip().encode()
        assert all(d.signed_with(key) for d in receiver.accepted())
        public = json.dumps([client.get("/api/training/status").json(), job(client, job_id), events])
        assert "hook-token-never-shown" not in public
        assert "Traceback" not in server.log(), "dropped streams and refused webhooks are not server errors"


def test_manual_steering_permissions_and_kill_then_resume(stack, tmp_path):
    model = stack.model
    with stack.client() as client:
        job_id = start(client, run_fields(model, tmp_path / "out", max_train_steps=LONG_RUN))
        wait_event(client, job_id, lambda e: e["type"] == "training.progress", what="training to run")

        assert client.post("/api/training/validation/run").json()["job_id"] == job_id
        assert client.post("/api/training/checkpoint/run").status_code == 202
        validation = wait_event(client, job_id, lambda e: e["type"] == "training.validation", what="validation")
        assert Path(validation["data"]["paths"][0]).is_file()
        checkpoint = wait_event(client, job_id, lambda e: e["type"] == "training.checkpoint", what="checkpoint")
        assert Path(checkpoint["checkpoint"]["path"]).is_dir()

        with stack.client(stack.researcher_key) as researcher:
            assert researcher.post("/api/training/stop").status_code == 403
            assert researcher.post("/api/training/cancel", files={"job_id": (None, job_id)}).status_code == 403
            assert researcher.post(f"/api/jobs/{job_id}/stop").status_code == 403
            assert researcher.post("/api/training/checkpoint/run").status_code == 403
            assert researcher.post(f"/api/jobs/{job_id}/validation").status_code == 403

        trainer_process(job(client, job_id)["run_dir"]).send_signal(signal.SIGKILL)
        killed = wait_final(client, job_id, timeout=30)
        assert killed["status"] == "failed"
        assert "SIGKILL" in killed["reason"] and killed["log_tail"], killed

        resumed = start(client, run_fields(model, tmp_path / "out", max_train_steps=LONG_RUN,
                                           resume_from_checkpoint="latest"))
        first = wait_event(client, resumed, lambda e: e["type"] == "training.progress", what="resumed progress")
        assert first["progress"]["step"] == checkpoint["checkpoint"]["step"] + 1
        assert client.post("/api/training/cancel", files={"job_id": (None, resumed)}).status_code == 200
        cancelled = wait_final(client, resumed, timeout=30)
        assert (cancelled["status"], cancelled["exit_code"]) == ("cancelled", 3), cancelled


def test_stop_then_resume_gives_the_uninterrupted_weights(stack, tmp_path):
    model = stack.model
    with stack.client() as client:
        reference = start(client, run_fields(model, tmp_path / "whole", max_train_steps=16))
        assert wait_final(client, reference)["status"] == "completed"

        interrupted = start(client, run_fields(model, tmp_path / "parts", max_train_steps=16))
        # asked while the trainer still starts up, the stop lands at its first optimizer step, however busy the machine
        assert client.post("/api/training/stop").status_code == 200
        stopped = wait_final(client, interrupted)
        assert stopped["status"] == "stopped", stopped
        saved = [e["checkpoint"] for e in all_events(client, interrupted) if e["type"] == "training.checkpoint"]
        stopped_at = saved[-1]["step"]
        assert saved[-1]["name"] == f"checkpoint-{stopped_at}" and stopped_at < 16, "stopped before the end"

        resumed = start(client, run_fields(model, tmp_path / "parts", max_train_steps=16,
                                           resume_from_checkpoint="latest"))
        assert wait_final(client, resumed)["status"] == "completed"
        assert progress_steps(all_events(client, resumed))[0] == stopped_at + 1

    whole = load_file(str(tmp_path / "whole" / LORA_FILE))
    parts = load_file(str(tmp_path / "parts" / LORA_FILE))
    assert whole.keys() == parts.keys()
    assert all((whole[name] == parts[name]).all() for name in whole)



def test_server_restart_mid_training_loses_no_event_or_webhook(tmp_path, tiny_pixart):
    workspace = tmp_path / "workspace"
    prepare_workspace(workspace)
    with Receiver() as receiver:
        hooks = json.dumps([{"webhook_type": "raw", "callback_url": receiver.url, "log_level": "info"}])
        server = start_server(workspace)
        try:
            with server.client() as client:
                job_id = start(client, run_fields(tiny_pixart, tmp_path / "out", max_train_steps=LONG_RUN,
                                                  webhook_config=hooks))
                wait_event(client, job_id, lambda e: e["type"] == "training.progress", what="training to run")
                trainer = trainer_process(job(client, job_id)["run_dir"])
        finally:
            stopped = server.stop()
        assert stopped in (0, -signal.SIGTERM), server.log()
        assert trainer.is_running(), "the trainer outlives the server"
        events_file = Path(trainer.cmdline()[-1]) / "events.jsonl"
        size_at_stop = events_file.stat().st_size
        wait_for(lambda: events_file.stat().st_size > size_at_stop, 60, "trainer events while no server runs")

        server = start_server(workspace)
        try:
            with server.client() as client:
                assert job(client, job_id)["status"] == "running", "re-adopted"
                resumed_at = len(all_events(client, job_id))
                wait_event(client, job_id, lambda e: True, 60, "events after the restart", start=resumed_at + 2)
                assert client.post("/api/training/stop").status_code == 200
                assert wait_final(client, job_id)["status"] == "stopped"
                events = all_events(client, job_id)
                assert_gap_free(events)
                steps = progress_steps(events)
                assert steps == sorted(set(steps)), "no progress event stored twice or out of order"
                trainer_lines = events_file.read_text().splitlines()
                assert len(trainer_lines) == len([e for e in events if e.get("data", {}).get("source") != "server"])
                wanted = {f"{job_id}:{e['index']}" for e in events
                          if e["type"] in ("training.status", "lifecycle.stage")}
                # At least once: a delivery cut off by the first server's shutdown may be sent again.
                wait_for(lambda: wanted <= {d.event_id for d in receiver.accepted()}, 60, "webhooks of both lives")
        finally:
            server.stop()
            kill_trainers(workspace)


def test_server_env_refuses_an_invalid_environment_and_starts_a_valid_one(tmp_path, tiny_pixart):
    workspace = tmp_path / "workspace"
    prepare_workspace(workspace)
    env = workspace / "config" / "tiny"
    env.mkdir(parents=True)
    config = {name: value for name, value in run_fields(tiny_pixart, tmp_path / "out").items()
              if name.startswith("--")}
    (env / "config.json").write_text(json.dumps({**config, "--learning_rate": "-1"}))
    refused = subprocess.run([sys.executable, "-m", "tuneforge", "server", "--workspace", str(workspace),
                              "--port", str(free_port()), "--env", "tiny"], capture_output=True, text=True,
                             timeout=60, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert refused.returncode == 2
    assert "learning_rate" in refused.stderr and "did not start" in refused.stderr

    (env / "config.json").write_text(json.dumps(config))
    server = start_server(workspace, "--env", "tiny")
    try:
        with server.client() as client:
            listed = wait_for(lambda: client.get("/api/jobs").json()["jobs"], 30, "the environment's job")
            assert listed[0]["env_name"] == "tiny"
            assert wait_final(client, listed[0]["job_id"])["status"] == "completed"
    finally:
        server.stop()
        kill_trainers(workspace)


def test_a_last_event_id_that_is_no_number_is_ignored(stack):
    """Headers arrive as latin-1: "²" passes str.isdigit() but not int(). (Over a real socket: the test client
    re-encodes header bytes.)"""
    with stack.client() as client, client.stream("GET", "/api/training/events/stream",
                                                 headers={"Last-Event-ID": b"\xb2"}) as response:
        assert response.status_code == 200
    assert "Traceback" not in stack.server.log()


def test_a_log_level_uvicorn_does_not_know_is_refused_clearly(tmp_path):
    refused = subprocess.run([sys.executable, "-m", "tuneforge", "server", "--workspace", str(tmp_path / "workspace"),
                              "--port", str(free_port())], capture_output=True, text=True, timeout=60,
                             env={**os.environ, "HF_HUB_OFFLINE": "1", "TUNEFORGE_LOG_LEVEL": "verbose"})
    assert refused.returncode == 2, refused.stderr
    assert "Setting log_level: Input should be 'critical'" in refused.stderr and "Traceback" not in refused.stderr


def test_open_event_streams_do_not_starve_other_requests(tmp_path):
    """Each dashboard keeps a stream open for hours; none may hold a database connection meanwhile."""
    server = start_server(tmp_path / "workspace")
    clients = [server.client() for _ in range(24)]
    try:
        streams = [c.stream("GET", "/api/training/events/stream").__enter__() for c in clients]
        for response in streams:
            assert response.status_code == 200
        with server.client(timeout=5) as client:
            assert client.get("/api/training/status").json()["status"] == "idle"
            assert client.get("/api/jobs").status_code == 200
    finally:
        for client in clients:
            client.close()
        server.stop()
