"""The page for people at `/` and the API's own documentation pages, all served from this machine.

The page is static: it signs in with the login cookie and then calls the same API that scripts use. `/docs` and
`/redoc` load Swagger UI and ReDoc from the files the fastapi-offline package ships, never from a CDN.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

from fastapi import APIRouter, FastAPI
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse
from fastapi.staticfiles import StaticFiles

from tuneforge import web
from tuneforge.api.deps import public

ASSETS = "/ui/assets"
VENDOR = "/ui/vendor"
VENDOR_FILES = Path(str(files("fastapi_offline") / "static"))
# The page runs only its own scripts and talks only to this server; previews may come as data URIs.
PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data: blob:; style-src 'self'; "
                               "script-src 'self'; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; "
                               "form-action 'self'; object-src 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-cache",
}

# Swagger UI and ReDoc start from an inline script; nothing they load may come from elsewhere (ReDoc's sidebar logo
# would be fetched from its CDN: the policy stops that request before it leaves the machine).
DOCS_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' "
                               "'unsafe-inline'; img-src 'self' data:; worker-src 'self' blob:; connect-src 'self'; "
                               "frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
}

router = APIRouter(include_in_schema=False)


def install(app: FastAPI) -> None:
    app.mount(ASSETS, StaticFiles(directory=web.STATIC), name="assets")
    app.mount(VENDOR, StaticFiles(directory=VENDOR_FILES), name="vendor")
    app.include_router(router)


@router.get("/")
@public
def page() -> FileResponse:
    return FileResponse(web.INDEX, media_type="text/html", headers=PAGE_HEADERS)


@router.get("/docs")
@public
def swagger_ui() -> HTMLResponse:
    return _with_headers(get_swagger_ui_html(
        openapi_url="/openapi.json", title="tuneforge API", swagger_js_url=f"{VENDOR}/swagger-ui-bundle.js",
        swagger_css_url=f"{VENDOR}/swagger-ui.css", swagger_favicon_url=f"{VENDOR}/favicon.png",
        oauth2_redirect_url=None,
        swagger_ui_parameters={"persistAuthorization": True, "validatorUrl": None, "withCredentials": True}))


@router.get("/redoc")
@public
def redoc() -> HTMLResponse:
    return _with_headers(get_redoc_html(
        openapi_url="/openapi.json", title="tuneforge API", redoc_js_url=f"{VENDOR}/redoc.standalone.js",
        redoc_favicon_url=f"{VENDOR}/favicon.png", with_google_fonts=False))


def _with_headers(response: HTMLResponse) -> HTMLResponse:
    response.headers.update(DOCS_HEADERS)
    return response
