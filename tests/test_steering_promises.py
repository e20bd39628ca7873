"""A 202 is a promise: every checkpoint, validation, stop or cancel request the server acknowledged is carried out
or answered by an event that says why not; and a stop does not wait for a long validation to finish sampling."""

from __future__ import annotations

import pytest

from engine_helpers import make_spec, read_events, run_in_process, write_images
from scheduler_support import add_job, give_dead_pid, stored_events, write_events
from tuneforge import runfolder
from tuneforge.errors import Conflict
from tuneforge.events import make
from tuneforge.scheduler.monitor import Monitor
from tuneforge.scheduler.outbox import Outbox
from tuneforge.services import jobs, steering
from tuneforge.services.principal import LOCAL_ADMIN

pytestmark = pytest.mark.both_databases


@pytest.mark.parametrize("family", ["pixart_sigma", "flux"])
def test_a_stop_interrupts_validation_and_requests_made_meanwhile_are_kept(family, tmp_path, request):
    """Mid-sampling a checkpoint, a validation and a stop are asked for: sampling gives way at its next step, the
    checkpoint is made (the stop's), and the validation request stays for the server to report."""
    model = request.getfixturevalue("tiny_pixart" if family == "pixart_sigma" else "tiny_flux")
    spec = make_spec(tmp_path, model, write_images(tmp_path / "data", 2), model_family=family, max_train_steps=50,
                     validation_prompt="a photo of a cat", validation_step_interval=2,
                     validation_num_inference_steps=40, validation_preview=True, validation_preview_steps=1)
    run_dir = tmp_path / "run"

    def ask_mid_sampling(event):
        if event.type == "validation.image" and event.data["step"] == 2:
            for action in ("checkpoint", "validate", "stop"):
                runfolder.request(run_dir, action)

    outcome, run = run_in_process(tmp_path, spec, ask_mid_sampling)
    assert outcome == "stopped" and run.global_step == 3
    events = read_events(run_dir)
    interrupted = [e for e in events if e["type"] == "log.message" and e["data"].get("interrupted")]
    assert len(interrupted) == 1 and "interrupted at sampling step 3/40" in interrupted[0]["message"]
    assert not [e for e in events if e["type"] == "training.validation"], "no half validation reported as done"
    assert [e["checkpoint"]["step"] for e in events if e["type"] == "training.checkpoint"] == [3]
    assert runfolder.left_over(run_dir) == {"validate"}


def test_requests_left_when_a_job_ends_are_answered_by_events(session_factory, tmp_path):
    job_id = add_job(session_factory, tmp_path)
    run_dir = tmp_path / "runs" / job_id
    for action in ("checkpoint", "validate", "stop"):
        runfolder.request(run_dir, action)
    assert runfolder.take(run_dir) == {"checkpoint", "validate", "stop"}  # the trainer took them...
    runfolder.done(run_dir, "checkpoint")
    runfolder.done(run_dir, "stop")  # ...and stopped, with a validation still asked for and one asked for after
    runfolder.request(run_dir, "checkpoint")
    write_events(run_dir, make("training.status", data={"status": "stopped"}))
    give_dead_pid(session_factory, job_id)
    Monitor(session_factory, tmp_path, Outbox(session_factory, b"k")).tick()
    answers = [e for e in stored_events(session_factory, job_id) if e["data"].get("carried_out") is False]
    assert sorted(e["data"]["request"] for e in answers) == ["checkpoint", "validate"]
    assert all("the job was stopped before the trainer got to it" in e["message"] for e in answers)
    assert runfolder.left_over(run_dir) == set()


def test_a_cancel_that_ended_the_job_by_signal_is_not_reported_as_undone(session_factory, tmp_path):
    job_id = add_job(session_factory, tmp_path)
    runfolder.request(tmp_path / "runs" / job_id, "cancel")
    with session_factory() as db:
        jobs.request(db, jobs.get(db, job_id), "cancel")
        db.commit()
    give_dead_pid(session_factory, job_id)
    Monitor(session_factory, tmp_path, Outbox(session_factory, b"k")).tick()
    events = stored_events(session_factory, job_id)
    assert events[-1]["data"]["status"] == "cancelled"
    assert not [e for e in events if e["data"].get("carried_out") is False]


@pytest.mark.parametrize("action", ["checkpoint", "validate", "stop", "cancel"])
def test_a_request_for_a_job_that_ended_meanwhile_is_refused_not_lost(session_factory, tmp_path, action):
    job_id = add_job(session_factory, tmp_path)
    with session_factory() as db:
        seen = jobs.get(db, job_id)  # what the request saw: starting
        with session_factory() as monitor_db:  # meanwhile the trainer exits and the monitor closes the job out
            jobs.transition(monitor_db, job_id, "completed")
            monitor_db.commit()
        with pytest.raises(Conflict, match="not running"):
            if action in ("checkpoint", "validate"):
                steering.trigger(db, seen, action, LOCAL_ADMIN)
            else:
                getattr(steering, action)(db, seen, LOCAL_ADMIN)
    assert runfolder.left_over(tmp_path / "runs" / job_id) == set(), "no request file is left for nobody"
