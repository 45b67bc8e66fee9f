"""Backends and judge scorers as entry points, so that a package adds one without a fork.

A worker backend is an entry point of ``agensbus.backends``, a judge scorer one of
``agensbus.judges``; each names a factory that the worker or judge calls with the settings
and the pipeline (``services.worker.backend.BackendFactory``,
``services.judge.scorers.ScorerFactory``). agensbus registers its own (``simulated``,
``openai``) the same way, in its pyproject.toml.
"""

from collections.abc import Callable
from importlib.metadata import EntryPoint, entry_points

BACKENDS = "agensbus.backends"
JUDGES = "agensbus.judges"

_WORDS = {BACKENDS: "worker backend", JUDGES: "judge scorer"}


class PluginConfigError(ValueError):
    """A backend or scorer that cannot work as configured; the message says what to fix."""


def _entry_points(group: str) -> dict[str, EntryPoint]:
    # An environment can hold one distribution twice (an editable install beside a wheel):
    # the first found wins, as importlib.metadata orders them by sys.path.
    found: dict[str, EntryPoint] = {}
    for entry in entry_points(group=group):
        found.setdefault(entry.name, entry)
    return found


def plugin_names(group: str) -> tuple[str, ...]:
    """The names installed in ``group``, sorted."""
    return tuple(sorted(_entry_points(group)))


def unknown_plugin(group: str, name: str) -> str | None:
    """Why ``name`` is not an installed plugin of ``group``, or None if it is."""
    names = plugin_names(group)
    if name in names:
        return None
    word = _WORDS[group]
    if not names:
        return (
            f"unknown {word} {name!r}: no {word}s are installed (entry point group {group}; "
            "reinstall agensbus to register its own)"
        )
    return (
        f"unknown {word} {name!r}; installed: {', '.join(names)} (a package adds one as an "
        f"entry point of the group {group})"
    )


def load_factory(group: str, name: str) -> Callable[..., object]:
    """The factory the entry point ``name`` of ``group`` names."""
    problem = unknown_plugin(group, name)
    if problem is not None:
        raise PluginConfigError(problem)
    entry = _entry_points(group)[name]
    try:
        factory: object = entry.load()
    except (ImportError, AttributeError) as error:
        raise PluginConfigError(
            f"{_WORDS[group]} {name!r} ({entry.value}) cannot be loaded: {error}"
        ) from None
    if not callable(factory):
        raise PluginConfigError(f"{_WORDS[group]} {name!r} ({entry.value}) is not callable")
    return factory
