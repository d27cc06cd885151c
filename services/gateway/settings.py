"""The gateway's settings: the common ones (``shared.config.Settings``) plus where it listens and how long
it waits for a service."""

from __future__ import annotations

from functools import lru_cache

from pydantic import Field

from shared.config import Settings, load


class GatewaySettings(Settings):
    http_host: str = Field("127.0.0.1", description="Address the HTTP API listens on.")
    http_port: int = Field(8080, ge=1, le=65535, description="Port of the HTTP API.")
    rpc_timeout_seconds: float = Field(
        10.0, gt=0, description="How long the gateway waits for the services in one request (every call, batch wait "
        "and retry); then it answers 504."
    )


@lru_cache(maxsize=1)
def get_settings() -> GatewaySettings:
    return load(GatewaySettings)
