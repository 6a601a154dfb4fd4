"""The chat page at ``/``, the console at ``/console`` and the API docs at ``/docs`` and ``/redoc``, all served
from this process.

Nothing is fetched from a CDN: the page is plain HTML and JavaScript in ``service/web`` (no build
step), and Swagger UI 5 / ReDoc come from the ``fastapi-offline`` package's static files (FastAPI's
defaults load them from jsdelivr, which an offline or air-gapped site cannot reach). The page and its
assets hold no data, so they need no API key; the page asks for one when ``/v1/kbs`` answers 401.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, FastAPI
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles

WEB = Path(__file__).resolve().parent.parent / "web"
router = APIRouter(include_in_schema=False)


def _docs_assets() -> Path:
    import fastapi_offline

    return Path(fastapi_offline.__file__).resolve().parent / "static"


@router.get("/")
def chat_page():
    return FileResponse(WEB / "index.html", media_type="text/html", headers={"Cache-Control": "no-cache"})


@router.get("/console")
def console_page():
    """The console of the people who own the KBs (service/web/console.*): KBs, documents, upload, chunks."""
    return FileResponse(WEB / "console.html", media_type="text/html", headers={"Cache-Control": "no-cache"})


@router.get("/docs")
def swagger_ui():
    return get_swagger_ui_html(openapi_url="/openapi.json", title="docqa API",
                               swagger_js_url="/static/docs/swagger-ui-bundle.js",
                               swagger_css_url="/static/docs/swagger-ui.css",
                               swagger_favicon_url="/static/docs/favicon.png")


@router.get("/redoc")
def redoc():
    return get_redoc_html(openapi_url="/openapi.json", title="docqa API",
                          redoc_js_url="/static/docs/redoc.standalone.js", redoc_favicon_url="/static/docs/favicon.png",
                          with_google_fonts=False)


def mount_static(app: FastAPI) -> None:
    app.mount("/static/docs", StaticFiles(directory=_docs_assets()), name="docs-assets")
    app.mount("/static", StaticFiles(directory=WEB), name="web")
