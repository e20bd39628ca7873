"""A full disk, for real: a tmpfs filled to its last byte (mounting one needs root, as the CI machine has).

The server keeps serving reads and logins and refuses writes with a 507 that says why; a trainer that runs out of
space says so in its exit code and in its job's reason, also when not even its report fits."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from tests.conftest import ADMIN
from tests.serverproc import start_server

from engine_helpers import make_spec, read_events, write_images, write_run_dir
from tuneforge import runfolder
from tuneforge.db.engine import make_engine, make_session_factory
from tuneforge.db.migrate import upgrade_to_head
from tuneforge.scheduler.monitor import Monitor
from tuneforge.scheduler.outbox import Outbox
from tuneforge.services import jobs
from tuneforge.services.principal import LOCAL_ADMIN

pytestmark = pytest.mark.e2e


@pytest.fixture
def small_disk(tmp_path):
    mount = tmp_path / "disk"
    mount.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", str(mount)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {mounted.stderr.decode().strip()}")
    yield mount
    subprocess.run(["umount", "--lazy", str(mount)], check=False)


def fill(disk: Path) -> Path:
    """Write to `disk` until not one more byte fits; delete the returned file to free it again."""
    filler = disk / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT)
    block = bytes(1 << 20)
    try:
        while True:
            os.write(fd, block)
    except OSError as exc:
        assert exc.errno == errno.ENOSPC
    finally:
        os.close(fd)
    return filler


def test_a_server_on_a_full_disk_serves_reads_and_logins_and_refuses_writes_clearly(small_disk):
    workspace = small_disk / "workspace"
    server = start_server(workspace, env={"TUNEFORGE_LOGIN_MAX_FAILURES_PER_ACCOUNT": "3"})
    try:
        with httpx.Client(base_url=server.url, timeout=30) as client:
            assert client.post("/api/cloud/auth/setup/first-admin", json=ADMIN).status_code == 201
            key = client.post("/api/cloud/auth/api-keys", json={"name": "ci"}).json()["key"]
            client.cookies.clear()
            (workspace / "datasets" / "more").mkdir(parents=True)
            filler = fill(small_disk)

            with_key = {"X-API-Key": key}  # its first use stamps last_used_at: a write that cannot happen
            assert client.get("/api/cloud/auth/me", headers=with_key).status_code == 200
            assert client.get("/api/configs/", headers=with_key).status_code == 200
            login = {"username": ADMIN["username"], "password": ADMIN["password"]}
            assert client.post("/api/cloud/auth/login", json=login).status_code == 200
            assert client.get("/api/cloud/auth/me").json()["user"]["username"] == ADMIN["username"]

            refused = client.post("/api/cloud/auth/api-keys", json={"name": "more"})
            assert refused.status_code == 507 and "disk is full" in refused.json()["detail"]
            upload = client.post("/api/datasets/upload", data={"target_path": "more"},
                                 files={"files": ("a.txt", b"caption " * 50000)}, headers=with_key)
            assert upload.status_code == 507 and "full" in upload.json()["detail"]

            client.cookies.clear()  # failed logins still count when the database cannot take them
            wrong = {"username": ADMIN["username"], "password": "not-the-password"}
            assert [client.post("/api/cloud/auth/login", json=wrong).status_code for _ in range(4)] == [
                401, 401, 401, 429]

            filler.unlink()
            assert client.post("/api/cloud/auth/api-keys", json={"name": "more"},
                               headers=with_key).status_code == 201
            listed = client.get("/api/cloud/auth/api-keys", headers=with_key).json()["keys"]
            assert [k["last_used_at"] is not None for k in listed] == [True, False]
    finally:
        server.stop()


def _run_trainer(run_dir: Path) -> int:
    command = [sys.executable, "-m", "tuneforge.trainer", str(run_dir)]
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    return subprocess.run(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                          timeout=300).returncode


def test_a_trainer_whose_outputs_find_no_space_says_so(small_disk, tmp_path, tiny_pixart):
    spec = make_spec(small_disk, tiny_pixart, write_images(tmp_path / "data", 2))
    run_dir = write_run_dir(tmp_path, spec)  # the run folder has room; the outputs and caches have none
    fill(small_disk)
    assert _run_trainer(run_dir) == runfolder.NO_SPACE
    error = next(e for e in read_events(run_dir) if e["type"] == "error")
    assert error["title"] == "No space left on the device" and error["data"]["exit_code"] == runfolder.NO_SPACE


def test_a_job_whose_run_folder_is_full_ends_as_no_space_left(small_disk, tmp_path, tiny_pixart):
    """Not even the trainer's report of the failure fits: the exit code carries it to the job's reason."""
    run_dir = small_disk / "runs" / "job1"
    write_run_dir(run_dir.parent, make_spec(small_disk, tiny_pixart, write_images(tmp_path / "data", 2)))
    (run_dir.parent / "run").rename(run_dir)
    (run_dir / runfolder.PID_FILE).write_text("0" * 20)  # rewritten in place: the run gets to its first event
    engine = make_engine(f"sqlite:///{tmp_path / 'state.db'}")
    upgrade_to_head(engine)
    session_factory = make_session_factory(engine)
    with session_factory() as db:
        jobs.create(db, job_id="job1", owner=LOCAL_ADMIN, env_name=None, config={}, run_dir=str(run_dir),
                    output_dir=str(small_disk / "out"), num_processes=1)
        db.commit()
    fill(small_disk)
    monitor = Monitor(session_factory, tmp_path, Outbox(session_factory, b"k"))
    monitor.tick()
    assert monitor.children["job1"].wait(timeout=300) == runfolder.NO_SPACE
    monitor.tick()
    with session_factory() as db:
        job = jobs.get(db, "job1")
        assert (job.state, job.reason) == ("failed", "no_space_left")
    engine.dispose()
