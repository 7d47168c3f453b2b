"""GET /ui: the inspection page (docs/ui.md), its two static assets, and GET /ui/status.

The page is three committed files in app/api/static/ (HTML, one JavaScript module, CSS): no
build step, nothing fetched from elsewhere, so it works on an offline cluster. Loading them
needs no key; the page then calls the JSON API (GET /messages and /messages/stream, scope
`messages:read`) with the key it asks for, as `Authorization: Bearer`. The page and its assets
are left out of the OpenAPI document (they are not an API); GET /ui/status is in it.

Every answer of the page carries a strict Content-Security-Policy: scripts only from the
service itself and no inline script, no plugins, no framing, connections only back to the
service. Record text is put in the page as text (`textContent`), never as markup; the policy
is the second line of defence should that ever slip.
"""

from functools import cache
from importlib import resources

from fastapi import APIRouter, Response

from app.api.deps import ServicesDep
from app.status import UiStatus, status_of

router = APIRouter(tags=["ui"])

CONTENT_SECURITY_POLICY = "; ".join(
    (
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self'",
        "connect-src 'self'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    )
)
_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    # Small files: always revalidated, so a new version of the service shows its own page.
    "Cache-Control": "no-cache",
}
# name served under /ui/ -> media type
ASSETS = {
    "ui.js": "text/javascript; charset=utf-8",
    "ui.css": "text/css; charset=utf-8",
}


@cache
def asset(name: str) -> bytes:
    """A file of app/api/static/, read once (it is part of the installed package)."""
    return resources.files("app.api").joinpath("static", name).read_bytes()


def _file(name: str, media_type: str) -> Response:
    return Response(asset(name), media_type=media_type, headers=_HEADERS)


@router.get("/ui", include_in_schema=False)
async def ui_page() -> Response:
    """The page; it asks for an API key (scope `messages:read`) when the API answers 401."""
    return _file("ui.html", "text/html; charset=utf-8")


@router.get("/ui/ui.js", include_in_schema=False)
async def ui_script() -> Response:
    """The page's one script (a module)."""
    return _file("ui.js", ASSETS["ui.js"])


@router.get("/ui/ui.css", include_in_schema=False)
async def ui_style() -> Response:
    """The page's style sheet (light and dark)."""
    return _file("ui.css", ASSETS["ui.css"])


@router.get("/ui/status", summary="The /ui page's operator figures")
async def ui_status(services: ServicesDep) -> UiStatus:
    """The disk spool's depth and oldest record, records in flight, records/s Kafka
    acknowledged over the last ten minutes (5-second intervals, from the service's own
    counter) and this writer's chain position. No key needed, like GET /metrics: the same
    figures are there."""
    return status_of(services)
