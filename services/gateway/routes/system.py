"""Routes about the gateway itself: ``GET /health`` (can it reach the database and the broker?)."""

from __future__ import annotations

from fastapi import Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field

from services.gateway.problems import problem_response, problem_responses
from services.gateway.routing import public_router
from services.gateway.state import gateway

public = public_router()


class HealthCheck(BaseModel):
    status: str = Field(description="`ok` or `unavailable`.")
    checks: dict[str, str]


@public.get("/health", response_model=HealthCheck, tags=["health"], responses=problem_responses(503),
            summary="Is the gateway able to reach the database and the message broker?")
async def health(request: Request) -> Response:
    gw = gateway(request)
    checks: dict[str, str] = {}
    if gw.pool is not None:
        try:
            async with gw.pool.connection(timeout=2.0) as conn:
                await conn.execute("SELECT 1")
            checks["database"] = "ok"
        except Exception as exc:
            checks["database"] = f"unreachable: {type(exc).__name__}"
    checks["broker"] = "ok" if gw.rpc.connected else "unreachable"
    if all(v == "ok" for v in checks.values()):
        return JSONResponse({"status": "ok", "checks": checks})
    return problem_response(503, "Service unavailable", "A dependency of the gateway is unreachable.",
                            slug="unhealthy", instance=request.url.path, extra={"checks": checks})


ROUTERS = (public,)
