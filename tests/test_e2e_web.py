"""A person follows a real training run in a real browser, against the real server and trainer on this CPU: creates
the first admin, sees the job appear, its loss plot grow and its validation images arrive, stops it and sees it
stopped with its checkpoint to download, resumes it and cancels the new job. A viewer sees the same job with no
buttons and a crafted stop is refused; an ended session goes back to signing in. No request leaves the server."""

from __future__ import annotations

import io
import zipfile

import pytest
from playwright.sync_api import expect, sync_playwright

from browser import guard, launch, screenshot, sign_in
from e2e_support import kill_trainers, prepare_workspace, run_fields, start
from serverproc import start_server

pytestmark = [pytest.mark.e2e, pytest.mark.browser]
ADMIN = {"username": "ada", "email": "ada@example.com", "password": "ada-password-1"}
VIEWER = {"username": "vic", "email": "vic@example.com", "password": "vic-password-1", "level_names": ["viewer"]}
LONG_RUN = 100_000  # steps: only the stop button ends it


def points(page) -> int:
    return int(page.locator("#loss-chart").get_attribute("data-points") or 0)


def create_first_admin(page, url: str) -> None:
    page.goto(f"{url}/")
    form = page.get_by_role("form", name="Create the first admin")
    form.get_by_label("Username").fill(ADMIN["username"])
    form.get_by_label("Email").fill(ADMIN["email"])
    form.get_by_label("Password", exact=True).fill(ADMIN["password"])
    form.get_by_role("button", name="Create admin and sign in").click()
    expect(page.get_by_role("heading", name="Jobs")).to_be_visible()


def test_a_person_follows_a_training_run_and_stops_it(tmp_path, tiny_pixart):
    workspace = tmp_path / "workspace"
    prepare_workspace(workspace)
    server = start_server(workspace)
    try:
        with sync_playwright() as playwright, server.client() as client:
            browser = launch(playwright)
            context = browser.new_context(viewport={"width": 1400, "height": 1000})
            outside = guard(context, server.url)
            page = context.new_page()
            create_first_admin(page, server.url)

            assert client.post("/api/auth/login", json=ADMIN).status_code == 200
            assert client.post("/api/users", json=VIEWER, headers={"Origin": server.url}).status_code == 201
            fields = run_fields(tiny_pixart, tmp_path / "out", max_train_steps=LONG_RUN,
                                validation_step_interval=3, validation_preview="true")
            job_id = start(client, {**fields, "--validation_num_inference_steps": "2"})

            watch_it_train(page, job_id)
            viewer_context, viewer, viewer_outside = viewer_sees_no_buttons(browser, server.url, job_id)
            checkpoint_href = stop_it(page, context, server.url)
            previews = client.get(f"/api/jobs/{job_id}/files", params={"kind": "preview"}).json()
            assert previews["total"] > 0, "previews are files too"
            resume_and_cancel(page, client, job_id, checkpoint_href)

            viewer_context.clear_cookies()  # the session is gone: the next refresh asks to sign in again
            viewer.goto(f"{server.url}/#/jobs")
            expect(viewer.get_by_text("Your session has ended")).to_be_visible(timeout=10_000)
            expect(viewer.get_by_role("form", name="Sign in")).to_be_visible()
            assert outside == [] and viewer_outside == []
            browser.close()
    finally:
        server.stop()
        kill_trainers(workspace)


def watch_it_train(page, job_id: str) -> None:
    """The job appears in the list; on its page the loss plot grows and a validation image arrives."""
    row = page.locator(f"tr[data-job-id='{job_id}']")
    expect(row).to_be_visible(timeout=30_000)
    row.get_by_role("link").click()
    expect(page.locator(".job-header [data-state=running]")).to_be_visible(timeout=120_000)
    page.wait_for_function("() => Number(document.querySelector('#loss-chart').dataset.points) >= 2",
                           timeout=120_000)
    seen = points(page)
    page.wait_for_function(f"() => Number(document.querySelector('#loss-chart').dataset.points) > {seen}",
                           timeout=60_000)
    image = page.locator(".gallery .tile-validation img").first
    expect(image).to_be_visible(timeout=120_000)
    page.wait_for_function("() => { const img = document.querySelector('.gallery .tile-validation img');"
                           " return img && img.complete && img.naturalWidth === 64; }")
    assert image.get_attribute("src").startswith(f"/api/jobs/{job_id}/files/output/validation/step-")
    expect(page.locator("button[data-action=stop]")).to_be_visible()
    expect(page.locator("#step-time")).to_contain_text(" ms")  # what the steps cost, from the progress events
    screenshot(page, "job-running")


def viewer_sees_no_buttons(browser, url: str, job_id: str):
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    outside = guard(context, url)
    viewer = context.new_page()
    sign_in(viewer, url, VIEWER["username"], VIEWER["password"])
    viewer.goto(f"{url}/#/jobs/{job_id}")
    expect(viewer.locator(".job-header [data-state=running]")).to_be_visible()
    viewer.wait_for_function("() => Number(document.querySelector('#loss-chart').dataset.points) >= 2")
    assert viewer.locator("[data-action]").count() == 0, "a viewer sees no steering buttons"
    crafted = context.request.post(f"{url}/api/jobs/{job_id}/stop", headers={"Origin": url})
    assert crafted.status == 403, crafted.text()
    return context, viewer, outside


def stop_it(page, context, url: str) -> str:
    """Stop: the job ends `stopped` with its checkpoint, which downloads as a zip. Returns the checkpoint's link."""
    page.locator("button[data-action=stop]").click()
    expect(page.locator(".job-header [data-state=stopped]")).to_be_visible(timeout=120_000)
    link = page.locator("table.files tr[data-kind=checkpoint] a").first
    expect(link).to_be_visible(timeout=30_000)
    expect(page.locator("table.files tr[data-kind=weights]")).to_have_count(0)  # stopped: no final weights
    screenshot(page, "job-stopped")
    href = link.get_attribute("href")
    with zipfile.ZipFile(io.BytesIO(context.request.get(url + href).body())) as opened:
        assert any(name.endswith("/trainer_state.json") for name in opened.namelist())
    return href


def resume_and_cancel(page, client, job_id: str, checkpoint_href: str) -> None:
    page.get_by_role("button", name="Resume").click()
    page.wait_for_function(f"() => location.hash.startsWith('#/jobs/') && !location.hash.endsWith('{job_id}')")
    resumed = page.evaluate("() => decodeURIComponent(location.hash.slice('#/jobs/'.length))")
    expect(page.locator(".job-header h1")).to_contain_text(resumed)
    page.once("dialog", lambda dialog: dialog.accept())
    page.locator("button[data-action=cancel]").click()
    expect(page.locator(".job-header [data-state=cancelled]")).to_be_visible(timeout=60_000)
    stopped_at = checkpoint_href.rsplit("/", 1)[-1]
    assert client.get(f"/api/jobs/{resumed}").json()["config"]["resume_from_checkpoint"].endswith(stopped_at)
