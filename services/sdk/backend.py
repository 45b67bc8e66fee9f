"""The SDK as a worker backend: executing an invoke calls the cell function registered for
its variant. Everything else (Kafka, commits, dedupe ids, concurrency, metrics, health,
draining on SIGTERM) is the built-in worker's own.

A function that raises fails its step (after its retries) with a failure kind; one that
returns something no handoff holds fails it with kind ``schema``. Neither stops the worker.
"""

import asyncio
import logging
import math
import time

from schemas.events import FailureKind
from schemas.records import HandoffDelta, TrajectoryState
from services.policy import StepResult, Variant
from services.policy.outcomes import Execution
from services.sdk.registry import CellFailed, Handler
from services.sdk.task import Result, ResultError, Task, as_result, delta_of
from services.worker.backend import Unexecutable

Key = tuple[str, str | None, str | None]

#: Failures that another attempt would only repeat.
_FINAL_KINDS = frozenset({FailureKind.AUTH, FailureKind.QUOTA, FailureKind.SCHEMA})


def failure_of(error: Exception) -> FailureKind:
    """The failure kind a raised exception stands for."""
    if isinstance(error, CellFailed):
        return error.kind
    if isinstance(error, TimeoutError):
        return FailureKind.TIMEOUT
    if isinstance(error, ConnectionError):
        return FailureKind.NETWORK
    return FailureKind.UPSTREAM


def retried(error: Exception, kind: FailureKind) -> bool:
    if isinstance(error, CellFailed) and not error.retry:
        return False
    return kind not in _FINAL_KINDS


def _check_costs(result: Result) -> None:
    for name in ("tokens_in", "tokens_out"):
        value = getattr(result, name)
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ResultError(f"Result.{name} must be an int >= 0, got {value!r}")
    cost = result.cost_usd
    if not isinstance(cost, int | float) or not math.isfinite(cost) or cost < 0:
        raise ResultError(f"Result.cost_usd must be a finite number >= 0, got {cost!r}")


class CellsBackend:
    def __init__(self, handlers: dict[Key, Handler], log: logging.Logger) -> None:
        self.handlers = handlers
        self._log = log

    def handler(self, variant: Variant) -> Handler | None:
        """The most specific registration serving ``variant``."""
        cell, protocol, model = variant.cell, variant.protocol, variant.model
        for key in ((cell, protocol, model), (cell, protocol, None), (cell, None, model)):
            if key in self.handlers:
                return self.handlers[key]
        return self.handlers.get((cell, None, None))

    async def execute(self, state: TrajectoryState, variant: Variant) -> Execution:
        handler = self.handler(variant)
        if handler is None:
            raise Unexecutable(
                "unserved_variant", f"no cell function here serves variant {variant.action}"
            )
        began = time.monotonic()
        attempt = 0
        while True:
            attempt += 1
            try:
                task = Task.of(state, variant, handler.role, attempt)
                result, delta = await self._attempt(handler, task)
            except ResultError as error:
                self._log.error(
                    "a cell function returned what no handoff can hold; the step fails",
                    extra={"cell": variant.action, "error": str(error)},
                )
                return _failed(FailureKind.SCHEMA, attempt, began)
            except Exception as error:
                kind = failure_of(error)
                again = retried(error, kind) and attempt <= handler.registration.retries
                self._log.warning(
                    "a cell function failed" + ("; trying again" if again else ""),
                    extra={
                        "cell": variant.action,
                        "attempt": attempt,
                        "kind": kind.value,
                        "error": f"{type(error).__name__}: {error}",
                    },
                )
                if again:
                    await asyncio.sleep(handler.registration.backoff_s * 2 ** (attempt - 1))
                    continue
                return _failed(kind, attempt, began)
            return _succeeded(result, delta, attempt, began)

    async def _attempt(self, handler: Handler, task: Task) -> tuple[Result, HandoffDelta]:
        timeout_s = handler.registration.timeout_s
        returned = await asyncio.wait_for(handler.call(task), timeout_s)
        result = as_result(returned, handler.role)
        _check_costs(result)
        return result, delta_of(result)

    async def start(self) -> None:
        pass

    async def stop(self) -> None:
        pass

    def readiness(self) -> tuple[bool, str]:
        served = sorted(h.registration.selector for h in self.handlers.values())
        return True, f"cell functions of your own: {', '.join(served)}"


def _succeeded(result: Result, delta: HandoffDelta, attempts: int, began: float) -> Execution:
    return Execution(
        StepResult(
            succeeded=True,
            delta=delta,
            tokens=result.tokens_in + result.tokens_out,
            retries=attempts - 1,
            done=result.done,
        ),
        result.tokens_in,
        result.tokens_out,
        time.monotonic() - began,
        attempts,
        None,
        float(result.cost_usd),
    )


def _failed(kind: FailureKind, attempts: int, began: float) -> Execution:
    result = StepResult(succeeded=False, retries=attempts - 1)
    return Execution(result, 0, 0, time.monotonic() - began, attempts, kind)
