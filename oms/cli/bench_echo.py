"""``python -m oms.cli.bench_echo PORT``: the bare HTTP endpoint ``oms bench`` measures as the HTTP limit.

One uvicorn worker, as the gateway runs, serving a raw ASGI app (no framework) that reads a JSON body, parses it
and answers a small JSON document with 201. Whatever the gateway serves below this rate is the cost of the
gateway and the services behind it, not of uvicorn, the kernel or the load client.
"""

from __future__ import annotations

import json
import sys
from typing import Any

ANSWER = b'{"id":"00000000-0000-0000-0000-000000000000","stage":"placed"}'


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    body = b""
    more = True
    while more:
        message = await receive()
        body += message.get("body", b"")
        more = message.get("more_body", False)
    status = 201
    if body:
        try:
            json.loads(body)
        except ValueError:
            status = 422
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": ANSWER})


def main(argv: list[str] | None = None) -> None:
    import uvicorn

    args = sys.argv[1:] if argv is None else argv
    port = int(args[0]) if args else 8099
    uvicorn.run(app, host="127.0.0.1", port=port, workers=1, log_level="warning", access_log=False,
                server_header=False)


if __name__ == "__main__":
    main()
