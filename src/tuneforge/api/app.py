"""The FastAPI application: wiring of settings, storage, error mapping and routers."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import Depends, FastAPI

from tuneforge import __version__, workspace
from tuneforge.api import errors
from tuneforge.api.deps import authenticate
from tuneforge.api.routes import auth, system, users
from tuneforge.db.engine import make_engine, make_session_factory
from tuneforge.db.migrate import upgrade_to_head
from tuneforge.settings import Settings

TAGS = [
    {"name": "auth", "description": "Setup, login, sessions and API keys."},
    {"name": "users", "description": "User accounts and access levels (admin)."},
    {"name": "configurations", "description": "Config environments and the options registry."},
    {"name": "training", "description": "Validate, start, watch and steer training jobs."},
    {"name": "datasets", "description": "Dataset folders and uploads."},
    {"name": "queue", "description": "The local job queue and device allocation."},
    {"name": "system", "description": "Health and system status."},
]


def create_app(settings: Settings) -> FastAPI:
    workspace.prepare(settings)
    engine = make_engine(settings.resolved_database_url)
    upgrade_to_head(engine)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        engine.dispose()

    app = FastAPI(
        title="tuneforge",
        version=__version__,
        description="Self-hosted training server for diffusion models.",
        openapi_tags=TAGS,
        lifespan=lifespan,
        dependencies=[Depends(authenticate)],
    )
    app.state.settings = settings
    app.state.engine = engine
    app.state.session_factory = make_session_factory(engine)
    errors.install(app)
    app.include_router(system.router)
    app.include_router(auth.router, prefix="/api/cloud/auth")
    app.include_router(auth.router, prefix="/api/auth")
    app.include_router(users.router)
    return app
