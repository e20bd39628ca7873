"""A job's files, metrics and long event logs over the real app: what can be downloaded, that each download is the
real file (a checkpoint as a zip of its files), that no path leaves the job's folders, and that long histories come
a page at a time."""

from __future__ import annotations

import io
import os
import zipfile
from pathlib import Path

import pytest
from PIL import Image

from tuneforge.services import job_events, jobs
from tuneforge.services.principal import LOCAL_ADMIN, Principal

pytestmark = pytest.mark.both_databases


def make_job(app, tmp_path: Path, job_id: str = "job1", owner: Principal = LOCAL_ADMIN) -> tuple[Path, Path]:
    """A finished job (the scheduler leaves it alone) with a run folder and an output folder."""
    run_dir, output = tmp_path / "runs" / job_id, tmp_path / f"out-{job_id}"
    run_dir.mkdir(parents=True)
    output.mkdir()
    with app.state.session_factory() as db:
        jobs.create(db, job_id=job_id, owner=owner, env_name="env", config={"validation_prompt": "a cat"},
                    run_dir=str(run_dir), output_dir=str(output), num_processes=1)
        jobs.transition(db, job_id, "cancelled")
        db.commit()
    return run_dir, output


def png_bytes(colour: str = "red") -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), colour).save(buffer, "PNG")
    return buffer.getvalue()


def fill_output(run_dir: Path, output: Path) -> None:
    (output / "pytorch_lora_weights.safetensors").write_bytes(b"weights" * 100)
    checkpoint = output / "checkpoint-3"
    (checkpoint / "optimizer").mkdir(parents=True)
    (checkpoint / "trainer_state.json").write_text('{"global_step": 3}')
    (checkpoint / "optimizer" / "state.bin").write_bytes(os.urandom(3000))
    (output / ".checkpoint-4.tmp").mkdir()  # unfinished: never listed
    step = output / "validation" / "step-2"
    (step / "previews").mkdir(parents=True)
    (step / "0-64x64.png").write_bytes(png_bytes())
    (step / "previews" / "64x64-0001.png").write_bytes(png_bytes("blue"))
    (run_dir / "trainer.log").write_text("step 1/3\n")
    (run_dir / "spec.json").write_text('{"webhook_config": [{"auth_token": "secret"}]}')


def test_the_listing_names_every_download_by_kind_and_each_download_is_the_real_file(app, local_client, tmp_path):
    run_dir, output = make_job(app, tmp_path)
    fill_output(run_dir, output)

    listing = local_client.get("/api/jobs/job1/files")
    assert listing.status_code == 200, listing.text
    found = {f["path"]: f for f in listing.json()["files"]}
    assert {path: f["kind"] for path, f in found.items()} == {
        "output/pytorch_lora_weights.safetensors": "weights", "output/checkpoint-3": "checkpoint",
        "output/validation/step-2/0-64x64.png": "validation",
        "output/validation/step-2/previews/64x64-0001.png": "preview", "run/trainer.log": "log"}
    assert found["output/checkpoint-3"]["step"] == 3 and found["output/checkpoint-3"]["is_folder"]
    assert found["output/checkpoint-3"]["size_bytes"] == 3000 + len('{"global_step": 3}')

    weights = local_client.get(found["output/pytorch_lora_weights.safetensors"]["url"])
    assert weights.content == b"weights" * 100
    assert weights.headers["content-disposition"].startswith("attachment")
    image = local_client.get("/api/jobs/job1/files/output/validation/step-2/0-64x64.png")
    assert (image.headers["content-type"], image.content) == ("image/png", png_bytes())
    assert local_client.get("/api/jobs/job1/files/run/trainer.log").text == "step 1/3\n"

    archive = local_client.get("/api/jobs/job1/files/output/checkpoint-3")
    assert archive.headers["content-type"] == "application/zip"
    with zipfile.ZipFile(io.BytesIO(archive.content)) as opened:
        assert sorted(opened.namelist()) == ["checkpoint-3/optimizer/state.bin", "checkpoint-3/trainer_state.json"]
        assert opened.read("checkpoint-3/optimizer/state.bin") == (
            output / "checkpoint-3" / "optimizer" / "state.bin").read_bytes()

    gallery = local_client.get("/api/jobs/job1/files", params={"kind": "validation", "order": "desc"}).json()
    assert [f["path"] for f in gallery["files"]] == ["output/validation/step-2/0-64x64.png"]


@pytest.mark.parametrize("path", [
    "output/%2e%2e/runs/job1/spec.json", "output/..%2F..%2Fetc%2Fpasswd", "%2Fetc%2Fpasswd", "run/spec.json",
    "output/.checkpoint-4.tmp", "output/validation", "output", "run", "output/missing.bin",
])
def test_no_path_leaves_the_job_folders_or_reaches_the_run_spec(app, local_client, tmp_path, path):
    run_dir, output = make_job(app, tmp_path)
    fill_output(run_dir, output)
    response = local_client.get(f"/api/jobs/job1/files/{path}")
    assert response.status_code in (403, 404), response.text
    assert "secret" not in response.text and "root:" not in response.text
    assert response.json()["detail"]


def test_links_out_of_the_output_folder_are_refused_and_never_listed(app, local_client, tmp_path):
    run_dir, output = make_job(app, tmp_path)
    secret = tmp_path / "secret.txt"
    secret.write_text("secret")
    (output / "leak.safetensors").symlink_to(secret)
    (output / "checkpoint-9").symlink_to(tmp_path)
    (output / "validation" / "step-1").mkdir(parents=True)
    (output / "validation" / "step-1" / "0-64x64.png").symlink_to(secret)
    assert local_client.get("/api/jobs/job1/files").json()["files"] == []
    for path in ("output/leak.safetensors", "output/checkpoint-9", "output/checkpoint-9/secret.txt",
                 "output/validation/step-1/0-64x64.png"):
        response = local_client.get(f"/api/jobs/job1/files/{path}")
        assert response.status_code == 403, (path, response.text)
        assert "secret" not in response.text.replace("secret.txt", "")


def test_folders_zipped_skip_links_inside_them(app, local_client, tmp_path):
    run_dir, output = make_job(app, tmp_path)
    (tmp_path / "outside.txt").write_text("outside")
    folder = output / "pipeline"
    folder.mkdir()
    (folder / "model_index.json").write_text("{}")
    (folder / "escape.txt").symlink_to(tmp_path / "outside.txt")
    (folder / "up").symlink_to(tmp_path)
    archive = local_client.get("/api/jobs/job1/files/output/pipeline")
    with zipfile.ZipFile(io.BytesIO(archive.content)) as opened:
        assert opened.namelist() == ["pipeline/model_index.json"]


def test_downloads_need_a_viewer_and_name_a_real_job(app, local_client, admin_client, anonymous, tmp_path):
    run_dir, output = make_job(app, tmp_path)
    fill_output(run_dir, output)
    assert anonymous.get("/api/jobs/job1/files").status_code == 401
    assert anonymous.get("/api/jobs/job1/files/run/trainer.log").status_code == 401
    assert admin_client.get("/api/jobs/job1/files/run/trainer.log").status_code == 200
    missing = admin_client.get("/api/jobs/nope/files")
    assert missing.status_code == 404 and "nope" in missing.json()["detail"]


def test_the_gallery_pages_newest_first_through_ten_thousand_images(app, local_client, tmp_path):
    run_dir, output = make_job(app, tmp_path)
    image = png_bytes()
    for step in range(1, 1001):
        folder = output / "validation" / f"step-{step}"
        folder.mkdir(parents=True)
        for index in range(10):
            (folder / f"{index}-64x64.png").write_bytes(image)
    page = local_client.get("/api/jobs/job1/files",
                            params={"kind": "validation", "order": "desc", "limit": 24, "offset": 24}).json()
    assert page["total"] == 10_000 and len(page["files"]) == 24
    assert {f["step"] for f in page["files"]} == {998, 997, 996}


def test_jobs_list_filters_by_owner_and_state_pages_and_says_who_may_steer(app, local_client, admin_client,
                                                                        make_user, tmp_path):
    researcher = make_user("rita", "researcher")
    rita = researcher.get("/api/cloud/auth/me").json()["user"]
    as_rita = Principal(user_id=rita["id"], username="rita", permissions=frozenset(), method="api_key")
    for number in range(3):
        make_job(app, tmp_path, f"admin{number}")
    make_job(app, tmp_path, "rita1", owner=as_rita)

    page = admin_client.get("/api/jobs", params={"limit": 2, "offset": 1}).json()
    assert (page["total"], page["count"], page["offset"]) == (4, 2, 1)
    mine = researcher.get("/api/jobs", params={"owner": "rita", "state": "cancelled"}).json()
    assert [job["job_id"] for job in mine["jobs"]] == ["rita1"] and mine["jobs"][0]["may_steer"] is True
    others = researcher.get("/api/jobs", params={"owner": "local-admin"}).json()
    assert others["total"] == 3 and {job["may_steer"] for job in others["jobs"]} == {False}
    assert admin_client.get("/api/jobs/rita1").json()["may_steer"] is True  # an admin may steer anyone's
    assert researcher.get("/api/jobs", params={"state": "running"}).json()["total"] == 0


def test_a_long_event_log_reads_backwards_by_severity_and_its_loss_curve_is_bounded(app, local_client, tmp_path):
    make_job(app, tmp_path)
    with app.state.session_factory() as db:
        for step in range(1, 3001):
            job_events.append(db, "job1", {"type": "training.progress", "title": "progress",
                                           "progress": {"step": step, "total_steps": 3000, "epoch": 1,
                                                        "total_epochs": 1, "loss": float(step),
                                                        "learning_rate": 0.5}})
            if step % 1000 == 0:
                job_events.append(db, "job1", {"type": "log.message", "severity": "warning",
                                               "title": f"warning at {step}"})
        db.commit()

    series = local_client.get("/api/jobs/job1/metrics", params={"max_points": 100}).json()
    assert (series["points"], series["bucket_size"], len(series["step"])) == (3000, 30, 100)
    assert series["step"][:2] == [30, 60] and series["loss"][0] == sum(range(1, 31)) / 30
    assert set(series["learning_rate"]) == {0.5}
    assert series["next_index"] == 3005  # queued + cancelled + 3000 progress + 3 warnings

    last = local_client.get("/api/jobs/job1/events", params={"before_index": 3005, "limit": 3}).json()
    assert [e["index"] for e in last["events"]] == [3002, 3003, 3004] and last["next_index"] == 3002
    warnings = local_client.get("/api/jobs/job1/events",
                                params={"before_index": 3005, "min_severity": "warning"}).json()
    assert [e["title"] for e in warnings["events"]] == ["warning at 1000", "warning at 2000", "warning at 3000"]
    forward = local_client.get("/api/jobs/job1/events", params={"min_severity": "error"}).json()
    assert forward["events"] == []


def test_the_loss_curve_has_every_step_a_throttled_report_carries(app, local_client, tmp_path):
    make_job(app, tmp_path)
    with app.state.session_factory() as db:
        for last in (10, 20):  # two reports, ten steps each
            steps = list(range(last - 9, last + 1))
            job_events.append(db, "job1", {"type": "training.progress", "title": "progress", "progress": {
                "step": last, "total_steps": 20, "epoch": 1, "total_epochs": 1, "loss": float(last),
                "learning_rate": 0.1, "steps": steps, "losses": [float(s) for s in steps],
                "learning_rates": [0.1] * 10}})
        db.commit()
    series = local_client.get("/api/jobs/job1/metrics", params={"max_points": 10}).json()
    assert (series["points"], series["bucket_size"]) == (20, 2)
    assert series["step"] == list(range(2, 21, 2)) and series["loss"][0] == 1.5


def test_backslashes_are_separators_in_what_is_checked_and_in_what_is_opened(app, local_client, tmp_path):
    run_dir, output = make_job(app, tmp_path)
    fill_output(run_dir, output)
    assert local_client.get("/api/jobs/job1/files/run%5Ctrainer.log").text == "step 1/3\n"
    archive = local_client.get("/api/jobs/job1/files/output%5Ccheckpoint-3")
    with zipfile.ZipFile(io.BytesIO(archive.content)) as opened:
        assert all(name.startswith("checkpoint-3/") for name in opened.namelist())
    assert local_client.get("/api/jobs/job1/files/output%5C..%5Cruns").status_code == 403


def test_an_output_folder_around_the_servers_own_is_not_served(app, local_client, tmp_path):
    """A job recorded before the policy refused such an output folder."""
    make_job(app, tmp_path)
    with app.state.session_factory() as db:
        jobs.get(db, "job1").output_dir = str(app.state.settings.workspace)
        db.commit()
    for path in ("/api/jobs/job1/files", "/api/jobs/job1/files/output/config"):
        response = local_client.get(path)
        assert response.status_code == 403 and "server's own folder" in response.json()["detail"], response.text


def test_kinds_combine_and_an_image_seen_before_is_not_sent_again(app, local_client, tmp_path):
    run_dir, output = make_job(app, tmp_path)
    fill_output(run_dir, output)
    listed = local_client.get("/api/jobs/job1/files", params={"kind": ["weights", "log"]}).json()["files"]
    assert [f["kind"] for f in listed] == ["weights", "log"]
    url = "/api/jobs/job1/files/output/validation/step-2/0-64x64.png"
    first = local_client.get(url)
    again = local_client.get(url, headers={"If-None-Match": first.headers["etag"]})
    assert (again.status_code, again.content) == (304, b"")
    (output / "validation" / "step-2" / "0-64x64.png").write_bytes(png_bytes("green"))
    assert local_client.get(url, headers={"If-None-Match": first.headers["etag"]}).content == png_bytes("green")


def test_a_loss_that_went_nan_is_stored_and_drawn_as_a_gap(app, local_client, tmp_path):
    """JSON has no NaN: the trainer writes null, and the curve has a gap, not a 500."""
    from tuneforge.events import Event, Progress, make

    make_job(app, tmp_path)
    event = make("training.progress", progress=Progress(step=2, total_steps=2, epoch=1, total_epochs=1,
                                                        loss=float("nan"), steps=[1, 2], losses=[0.5, float("nan")],
                                                        learning_rates=[0.1, 0.1]))
    with app.state.session_factory() as db:
        job_events.append(db, "job1", Event.model_validate_json(event.to_json()).to_dict())
        db.commit()
    series = local_client.get("/api/jobs/job1/metrics").json()
    assert series["step"] == [1, 2] and series["loss"] == [0.5, None]
