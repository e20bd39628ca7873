"""The FastAPI application: wiring of settings, storage, error mapping and routers."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import Depends, FastAPI

from tuneforge import __version__, workspace
from tuneforge.api import errors, openapi
from tuneforge.api.deps import authenticate
from tuneforge.api.limits import BodyLimit
from tuneforge.api.routes import artifacts, auth, configs, datasets, jobs, queue, system, users, web
from tuneforge.api.routes import training as training_routes
from tuneforge.db.engine import make_engine, make_session_factory
from tuneforge.db.migrate import upgrade_to_head
from tuneforge.errors import TuneforgeError
from tuneforge.scheduler.runner import Scheduler
from tuneforge.services import devices, submission
from tuneforge.services.datasets import uploads
from tuneforge.services.outbound import OutboundPolicy
from tuneforge.services.principal import LOCAL_ADMIN
from tuneforge.services.secrets import stored_key
from tuneforge.settings import Settings

log = logging.getLogger("tuneforge")

TAGS = [
    {"name": "auth", "description": "Setup, login, sessions and API keys."},
    {"name": "users", "description": "User accounts and access levels (admin)."},
    {"name": "configurations", "description": "Config environments and the options registry."},
    {"name": "training", "description": "Validate, start, watch and steer training jobs."},
    {"name": "datasets", "description": "Dataset folders and uploads."},
    {"name": "queue", "description": "The local job queue and device allocation."},
    {"name": "system", "description": "Health and system status."},
]


def create_app(settings: Settings, start_env: str | None = None) -> FastAPI:
    """The app; with `start_env`, that environment's training starts once the server is up."""
    workspace.prepare(settings)
    uploads.discard_staging(settings.datasets_root)
    # A walk of every dataset folder can take a while: it runs beside the server, not before it.
    threading.Thread(target=uploads.sweep_partial_files, args=(settings.datasets_root, time.time()),
                     name="sweep-partial-uploads", daemon=True).start()
    engine = make_engine(settings.resolved_database_url)
    upgrade_to_head(engine)

    session_factory = make_session_factory(engine)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        gpus = await asyncio.to_thread(devices.discover)
        app.state.scheduler = Scheduler(session_factory, settings.workspace, settings.state_dir,
                                        OutboundPolicy.from_settings(settings), gpus)
        await app.state.scheduler.start()
        if start_env is not None:
            await asyncio.to_thread(_start_environment, session_factory, settings, start_env, gpus)
            app.state.scheduler.wake()
        yield
        await app.state.scheduler.stop()
        engine.dispose()

    app = FastAPI(
        title="tuneforge",
        version=__version__,
        description="Self-hosted training server for diffusion models.",
        openapi_tags=TAGS,
        lifespan=lifespan,
        dependencies=[Depends(authenticate)],
        docs_url=None,  # served from local files by routes.web
        redoc_url=None,
    )
    app.add_middleware(BodyLimit, limit=settings.max_body_bytes)
    app.state.settings = settings
    app.state.engine = engine
    app.state.session_factory = session_factory
    app.state.session_key = stored_key(settings.state_dir / "session_key")
    errors.install(app)
    openapi.install(app)
    app.include_router(system.router)
    app.include_router(auth.router, prefix="/api/cloud/auth")
    app.include_router(auth.router, prefix="/api/auth")
    app.include_router(users.router)
    app.include_router(configs.router)
    app.include_router(training_routes.router)
    app.include_router(jobs.router)
    app.include_router(artifacts.router)
    app.include_router(queue.router)
    app.include_router(datasets.router)
    web.install(app)
    return app


def _start_environment(session_factory, settings: Settings, env: str, gpus: list[devices.Gpu]) -> None:
    """`server --env`: queue the environment's job. A refusal (the environment changed since `serve` checked it,
    it cannot run on this machine) is the operator's to read, not a reason to stop serving."""
    try:
        with session_factory() as db:
            outcome = submission.submit(db, settings, LOCAL_ADMIN, {}, gpus, env=env)
    except TuneforgeError as exc:
        problems = "".join(f"\n  - {e.field}: {e.message}" for e in exc.errors)
        log.warning("training from environment '%s' was not started: %s%s", env, exc.detail, problems)
        return
    assert outcome.job is not None  # neither a dry run nor no_wait
    log.warning("queued training job %s from environment '%s'", outcome.job.id, env)
