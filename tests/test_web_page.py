"""The page at `/` and the API docs in a real browser, against the real app behind uvicorn: a job with a long
history (100,000 events, 10,000 validation images) stays a page at a time, the other views show what the API
holds, and no request leaves the server. The training run followed from start to stop is in test_e2e_web.py."""

from __future__ import annotations

import io
from pathlib import Path

import httpx
import pytest
from PIL import Image
from playwright.sync_api import expect, sync_playwright
from sqlalchemy import insert, update

from browser import guard, launch, screenshot, sign_in
from conftest import ADMIN
from serverproc import served_in_thread
from tuneforge.db.models import Job, JobEvent
from tuneforge.services import jobs
from tuneforge.services.principal import LOCAL_ADMIN

pytestmark = pytest.mark.browser
EVENTS = 100_000
IMAGES_PER_STEP, STEPS = 10, 1000


@pytest.fixture(scope="module")
def browser():
    with sync_playwright() as playwright:
        instance = launch(playwright)
        yield instance
        instance.close()


@pytest.fixture
def served(app):
    """The app on a real port, with its first admin (signing in is the page's first step once there is one)."""
    with served_in_thread(app) as address, httpx.Client(base_url=address) as client:
        assert client.post("/api/auth/setup/first-admin", json=ADMIN).status_code == 201
        client.headers["X-API-Key"] = client.post("/api/auth/api-keys", json={"name": "tests"}).json()["key"]
        client.cookies.clear()
        yield client


def url(client: httpx.Client) -> str:
    return str(client.base_url).rstrip("/")


def signed_in_page(browser, url: str):
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    outside = guard(context, url)
    page = context.new_page()
    sign_in(page, url, ADMIN["username"], ADMIN["password"])
    return page, outside


def png(colour: str) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (64, 64), colour).save(buffer, "PNG")
    return buffer.getvalue()


def seed_long_job(app, tmp_path: Path) -> str:
    """A finished job with a long history, written straight into the database and its output folder."""
    output = tmp_path / "out"
    with app.state.session_factory() as db:
        jobs.create(db, job_id="long", owner=LOCAL_ADMIN, env_name="long-run",
                    config={"validation_prompt": "a red square"}, run_dir=str(tmp_path / "run"),
                    output_dir=str(output), num_processes=1)
        jobs.transition(db, "long", "cancelled")
        start = db.get(Job, "long").next_index
        rows = [{"job_id": "long", "index": start + i, "type": "training.progress", "severity": "info",
                 "payload": {"type": "training.progress", "index": start + i, "job_id": "long", "severity": "info",
                             "title": "Training progress", "timestamp": "2026-12-01T10:00:00.000Z",
                             "progress": {"step": i + 1, "total_steps": EVENTS, "epoch": 1, "total_epochs": 1,
                                          "loss": 1.0 / (1 + i / 1000), "learning_rate": 1e-4}}}
                for i in range(EVENTS)]
        rows += [{"job_id": "long", "index": start + EVENTS + i, "type": "log.message", "severity": "warning",
                  "payload": {"type": "log.message", "index": start + EVENTS + i, "job_id": "long",
                              "severity": "warning", "title": f"warning {i}",
                              "timestamp": "2026-12-01T11:00:00.000Z"}} for i in range(2)]
        db.execute(insert(JobEvent), rows)
        db.execute(update(Job).where(Job.id == "long").values(next_index=start + len(rows)))
        db.commit()
    pictures = [png(colour) for colour in ("red", "green", "blue", "orange", "purple")]
    for step in range(1, STEPS + 1):
        folder = output / "validation" / f"step-{step * 100}"
        folder.mkdir(parents=True)
        for index in range(IMAGES_PER_STEP):
            (folder / f"{index}-64x64.png").write_bytes(pictures[(step + index) % len(pictures)])
    return "long"


def test_a_job_with_a_long_history_opens_a_page_at_a_time(app, served, browser, tmp_path):
    job_id = seed_long_job(app, tmp_path)
    page, outside = signed_in_page(browser, url(served))
    page.goto(f"{url(served)}/#/jobs/{job_id}")

    expect(page.locator(".job-header h1")).to_contain_text("long-run")
    page.wait_for_function("() => Number(document.querySelector('#loss-chart').dataset.points) > 100")
    points = int(page.locator("#loss-chart").get_attribute("data-points"))
    assert points <= 1500, "the curve comes downsampled, not as 100,000 points"
    expect(page.locator("table.events tbody tr")).to_have_count(100)
    expect(page.locator(".gallery .tile-validation")).to_have_count(24)
    assert page.locator(".gallery-step").first.get_attribute("data-step") == str(STEPS * 100), "newest first"
    page.wait_for_function("() => [...document.querySelectorAll('.gallery img')].slice(0, 5)"
                           ".every((img) => img.complete && img.naturalWidth === 64)")
    screenshot(page, "long-job")

    page.get_by_role("button", name="Load older images").click()
    expect(page.locator(".gallery .tile-validation")).to_have_count(48)
    page.get_by_role("button", name="Load older events").click()
    expect(page.locator("table.events tbody tr")).to_have_count(200)
    page.get_by_label("Least severity shown").select_option("warning")
    expect(page.locator("table.events tbody tr")).to_have_count(2)
    actions = page.locator("[data-action]").evaluate_all("(buttons) => buttons.map((b) => b.dataset.action)")
    assert actions == ["resume"], "a cancelled job can only be resumed"

    page.goto(f"{url(served)}/#/jobs/no-such-job")
    expect(page.get_by_role("heading", name="No such job")).to_be_visible()
    page.goto(f"{url(served)}/#/jobs")
    expect(page.locator(f"tr[data-job-id='{job_id}'] [data-state=cancelled]")).to_be_visible()
    page.get_by_label("State").select_option("running")
    expect(page.get_by_text("No jobs match.")).to_be_visible()
    page.get_by_label("State").select_option("cancelled")
    page.get_by_label("Owner").fill("local-admin")
    page.get_by_role("button", name="Filter").click()
    expect(page.locator(f"tr[data-job-id='{job_id}']")).to_be_visible()
    expect(page.get_by_text("1–1 of 1")).to_be_visible()
    assert outside == []


def test_environments_and_datasets_show_what_the_api_holds_and_upload_with_progress(app, served, browser, tmp_path):
    assert served.post("/api/configs/environments",
                       json={"name": "my-env", "model_family": "pixart_sigma", "model_type": "lora"}
                       ).status_code == 201
    assert served.post("/api/datasets/folders", data={"folder_name": "cats"}).status_code in (200, 201)
    page, outside = signed_in_page(browser, url(served))

    page.goto(f"{url(served)}/#/environments")
    page.get_by_role("link", name="my-env").click()
    expect(page.locator("table.config")).to_contain_text("pixart_sigma")

    page.goto(f"{url(served)}/#/datasets")
    page.get_by_role("link", name="cats").click()
    expect(page.get_by_role("heading", name="Upload into cats")).to_be_visible()  # not the root's form, replaced
    picture, caption = tmp_path / "001.png", tmp_path / "001.txt"
    picture.write_bytes(png("red"))
    caption.write_text("a red square")
    page.get_by_label("Files to upload").set_input_files([str(picture), str(caption)])
    page.get_by_role("button", name="Upload files").click()
    expect(page.locator(".upload-status")).to_contain_text("2 stored")
    expect(page.get_by_text("1 images and 1 captions here")).to_be_visible()
    assert (app.state.settings.datasets_root / "cats" / "001.png").read_bytes() == png("red")
    screenshot(page, "datasets")
    assert outside == []


@pytest.mark.parametrize("path, ready", [("/docs", ".swagger-ui .info .title"), ("/redoc", "h1")])
def test_the_api_docs_render_offline(served, browser, path, ready):
    context = browser.new_context()
    outside = guard(context, url(served))
    page = context.new_page()
    page.goto(f"{url(served)}{path}")
    expect(page.locator(ready).first).to_contain_text("tuneforge")
    if path == "/docs":
        expect(page.get_by_role("button", name="Authorize")).to_be_visible()
    page.wait_for_load_state("networkidle")
    screenshot(page, path.strip("/"))
    assert outside == [], "every request the page makes goes to this server"
