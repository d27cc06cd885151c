"""Natural batching of order placements: concurrent POSTs share one RPC call and one transaction.

No request waits for a batch to fill: the first one goes out at once, alone; requests that arrive while
calls are in flight are sent together as the next call. At low load every batch has one order (no added
latency); under load batches grow by themselves, which is how placement keeps up with many clients.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any, Protocol

from services.gateway.rpc import rebuild_error


class _Rpc(Protocol):
    async def call(self, service: str, method: str, *args: Any, timeout: float | None = None, **kwargs: Any) -> Any:
        ...


class PlacementBatcher:
    def __init__(self, rpc: _Rpc, *, max_batch: int = 64, max_in_flight: int = 4) -> None:
        self.rpc = rpc
        self.max_batch = max_batch
        self._queue: asyncio.Queue[tuple[dict[str, Any], asyncio.Future[Any]]] = asyncio.Queue()
        self._slots = asyncio.Semaphore(max_in_flight)
        self._task: asyncio.Task[None] | None = None
        self.batches = 0
        self.placed = 0

    async def place(self, command: dict[str, Any], actor: dict[str, Any], idempotency_key: str | None) -> Any:
        if self._task is None:
            self._task = asyncio.create_task(self._run())
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        await self._queue.put(({"command": command, "actor": actor, "idempotency_key": idempotency_key}, future))
        return await future

    async def _run(self) -> None:
        while True:
            first = await self._queue.get()
            await self._slots.acquire()
            batch = [first]
            while len(batch) < self.max_batch and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            asyncio.create_task(self._send(batch))

    async def _send(self, batch: list[tuple[dict[str, Any], asyncio.Future[Any]]]) -> None:
        try:
            answers = await self.rpc.call("orders", "place_orders", requests=[req for req, _f in batch])
            self.batches += 1
            self.placed += len(batch)
            for (_req, future), answer in zip(batch, answers, strict=True):
                if future.done():
                    continue
                if "error" in answer:
                    future.set_exception(rebuild_error(answer["error"], "orders", "place_orders"))
                else:
                    future.set_result(answer["result"])
        except BaseException as exc:  # noqa: BLE001 - the whole call failed (503/504): every caller hears it
            for _req, future in batch:
                if not future.done():
                    future.set_exception(exc)
        finally:
            self._slots.release()

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
