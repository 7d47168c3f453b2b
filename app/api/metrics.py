"""GET /metrics: Prometheus text format."""

from fastapi import APIRouter, Response

from app.api.deps import ServicesDep
from app.metrics import CONTENT_TYPE

router = APIRouter(tags=["operations"])


@router.get(
    "/metrics",
    summary="Prometheus metrics",
    response_class=Response,
    responses={200: {"content": {CONTENT_TYPE: {"example": "rg_http_requests_total{...} 1.0"}}}},
)
async def metrics(services: ServicesDep) -> Response:
    """Requests by route and status, produce latency, records produced and failed, the
    GET /messages buffer and its consumer's lag. Needs no key: restrict it at the network
    level (or by not exposing the port) where that matters."""
    return Response(services.metrics.render(), media_type=CONTENT_TYPE)
