"""Registering cell functions: ``@cell("solver")`` on a function (sync or async) or on a class
whose instances are callable, optionally for one protocol or model of the cell only.

Mistakes are found as early as they can be: a decorated object that cannot be called, a
function registered twice for the same variants, or a return annotation no handoff can hold
raise :class:`SdkError` at import; a cell, protocol or model the pipeline does not have,
when the set is bound to the pipeline's pool before serving."""

import asyncio
import inspect
import types
import typing
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Concatenate, ParamSpec, TypeVar

from schemas.events import FailureKind
from schemas.records import Role
from services.policy import CellPool, Variant
from services.sdk.task import RETURNS, Result, Task

MAX_RETRIES = 10
P = ParamSpec("P")
R = TypeVar("R")

#: Return annotations a cell function may carry (unannotated is fine too).
_RETURNABLE: frozenset[object] = frozenset({Result, str, list[str]})


class SdkError(ValueError):
    """A misuse of the SDK: says what and where, in one line."""


class CellFailed(Exception):
    """Raise from a cell function to fail the step with a failure kind of your choice
    (see schemas.events.FailureKind); ``retry`` False fails at once, without retries."""

    def __init__(self, kind: str, message: str = "", *, retry: bool = True) -> None:
        super().__init__(message or kind)
        self.kind = FailureKind(kind)
        self.retry = retry


@dataclass(frozen=True, slots=True)
class Registration:
    cell: str
    protocol: str | None
    model: str | None
    target: object
    retries: int
    timeout_s: float | None
    backoff_s: float

    @property
    def where(self) -> str:
        name = getattr(self.target, "__qualname__", type(self.target).__name__)
        return f"{getattr(self.target, '__module__', '?')}.{name}"

    @property
    def selector(self) -> str:
        return Variant(self.cell, self.protocol, self.model).action


@dataclass(frozen=True, slots=True)
class Handler:
    """A registration bound to the pool: the callable to run and the role of its cell."""

    registration: Registration
    role: Role
    call: Callable[[Task], Awaitable[Any]]


class CellSet:
    """The cell functions one process serves."""

    def __init__(self) -> None:
        self._registered: dict[tuple[str, str | None, str | None], Registration] = {}

    def cell(
        self,
        name: str,
        *,
        protocol: str | None = None,
        model: str | None = None,
        retries: int = 1,
        timeout_s: float | None = None,
        backoff_s: float = 0.5,
    ) -> Callable[[Any], Any]:
        """Serve the invokes of cell ``name`` (of ``protocol`` / ``model`` only, when given)
        with the decorated function; an attempt that raises is tried again up to ``retries``
        times, after ``backoff_s`` and then twice as long each time; one that takes longer
        than ``timeout_s`` fails with kind timeout."""
        if not 0 <= retries <= MAX_RETRIES or (timeout_s is not None and timeout_s <= 0):
            raise SdkError(
                f"cell {name!r}: retries must be 0 to {MAX_RETRIES} and timeout_s positive"
            )
        if backoff_s < 0:
            raise SdkError(f"cell {name!r}: backoff_s must be >= 0")

        def register(target: Any) -> Any:
            registration = Registration(
                name, protocol, model, target, retries, timeout_s, backoff_s
            )
            _check_callable(registration)
            key = (name, protocol, model)
            if key in self._registered:
                raise SdkError(
                    f"cell {registration.selector!r} is served twice: by "
                    f"{self._registered[key].where} and by {registration.where}"
                )
            self._registered[key] = registration
            return target

        return register

    @property
    def registrations(self) -> tuple[Registration, ...]:
        return tuple(self._registered.values())

    def bind(self, pool: CellPool) -> dict[tuple[str, str | None, str | None], Handler]:
        """Each registration checked against ``pool`` and made ready to call."""
        if not self._registered:
            raise SdkError("no cell functions are registered (decorate one with @cell(...))")
        return {key: _bind(r, pool) for key, r in self._registered.items()}


def _check_callable(registration: Registration) -> None:
    target = registration.target
    if inspect.isclass(target):
        if not any("__call__" in vars(k) for k in target.__mro__[:-1]):
            raise SdkError(
                f"cell {registration.selector!r}: class {registration.where} has no __call__ "
                "method (a cell class's instances are called with the task)"
            )
        function: Any = target.__call__
    elif callable(target):
        function = target
    else:
        raise SdkError(
            f"cell {registration.selector!r}: @cell decorates a function or a class, not "
            f"{type(target).__name__} {target!r}"
        )
    try:
        hints = typing.get_type_hints(function)
    except Exception:  # an annotation that does not resolve is the function's business
        return
    returned = hints.get("return", Result)
    if returned not in _RETURNABLE and not _is_union_of_returnable(returned):
        raise SdkError(
            f"cell {registration.selector!r}: {registration.where} is annotated to return "
            f"{returned!r}; {RETURNS}"
        )


def _is_union_of_returnable(annotation: object) -> bool:
    members = typing.get_args(annotation)
    return (
        typing.get_origin(annotation) in (typing.Union, types.UnionType)
        and bool(members)
        and all(m in _RETURNABLE for m in members)
    )


def _bind(registration: Registration, pool: CellPool) -> Handler:
    cell = pool.cells.get(registration.cell)
    if cell is None:
        raise SdkError(
            f"cell {registration.cell!r} ({registration.where}) is not in the pipeline; its "
            f"cells are {', '.join(sorted(pool.cells))}"
        )
    matching = [
        v
        for v in cell.variants
        if registration.protocol in (None, v.protocol) and registration.model in (None, v.model)
    ]
    if not matching:
        raise SdkError(
            f"cell {registration.cell!r} has no variant {registration.selector!r} "
            f"({registration.where}); its variants are "
            f"{', '.join(v.action for v in cell.variants)}"
        )
    target = registration.target
    instance = target() if inspect.isclass(target) else target
    return Handler(registration, cell.role, _awaitable(instance))


def _awaitable(function: Any) -> Callable[[Task], Awaitable[Any]]:
    """``function`` as a coroutine function: a sync one runs in a thread, off the loop."""
    if inspect.iscoroutinefunction(function) or inspect.iscoroutinefunction(
        type(function).__call__
    ):
        return typing.cast(Callable[[Task], Awaitable[Any]], function)

    async def in_thread(task: Task) -> Any:
        return await asyncio.to_thread(function, task)

    return in_thread


#: The cells registered with the module-level :func:`cell` decorator.
DEFAULT_CELLS = CellSet()


def default_cells() -> CellSet:
    """The set :func:`cell` registers into (looked up at each call, so tests can swap it)."""
    return DEFAULT_CELLS


def _on_default_cells(method: Callable[Concatenate[CellSet, P], R]) -> Callable[P, R]:
    def call(*args: P.args, **kwargs: P.kwargs) -> R:
        return method(default_cells(), *args, **kwargs)

    return call


#: :meth:`CellSet.cell` of the default set, which ``agensbus serve-cells MODULE`` serves.
cell = _on_default_cells(CellSet.cell)
