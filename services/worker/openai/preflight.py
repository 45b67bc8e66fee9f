"""Readiness of the openai backend: every configured endpoint answers and takes its key.

Readiness checks are synchronous and must answer at once, so the endpoints are probed in
the background and the check reports the last round. Until the first round has run, and
whenever a key is missing, the worker is not ready.
"""

import asyncio
import logging

from services.worker.openai.client import ChatClient
from services.worker.openai.models import ModelTable

INTERVAL_S = 15.0


class Preflight:
    def __init__(
        self,
        table: ModelTable,
        client: ChatClient,
        log: logging.Logger | None = None,
        interval_s: float = INTERVAL_S,
    ) -> None:
        self.table = table
        self.client = client
        self.interval_s = interval_s
        self._log = log or logging.getLogger("agensbus.worker.openai")
        self._result: tuple[bool, str] = (False, "endpoints not probed yet")
        self._task: asyncio.Task[None] | None = None

    def check(self) -> tuple[bool, str]:
        return self._result

    async def probe(self) -> tuple[bool, str]:
        """One round over every (endpoint, key) the table uses."""
        specs = list(self.table.endpoints().values())
        if not specs:
            self._result = (False, "no model configured")
            return self._result
        results = await asyncio.gather(*(self.client.probe(spec) for spec in specs))
        failing = [detail for ok, detail in results if not ok]
        self._result = (not failing, "; ".join(failing or [d for _, d in results]))
        return self._result

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    async def _run(self) -> None:
        while True:
            try:
                await self.probe()
            except Exception:  # a bug here must not end the probing, nor the worker
                self._log.exception("probing the model endpoints failed")
            await asyncio.sleep(self.interval_s)
