"""The optional extras (pyproject.toml): what each brings, and one clear line when a command
needs one that is not installed, before the command starts anything."""

import importlib

from services.cli._errors import UserError

#: Extra -> the modules of its packages that the code imports.
EXTRAS: dict[str, tuple[str, ...]] = {
    "reports": ("matplotlib",),
    "openai": ("httpx", "bm25s", "Stemmer"),
    "tracing": ("opentelemetry",),
}


def require_extra(extra: str, needed_by: str) -> None:
    """Raise a :class:`UserError` naming ``extra`` when one of its modules cannot be
    imported. Importing them costs nothing extra: the command imports them next."""
    for module in EXTRAS[extra]:
        try:
            importlib.import_module(module)
        except ModuleNotFoundError:
            raise UserError(
                f"{needed_by} needs the {extra} extra ({module} is not installed): "
                f"pip install 'agensbus[{extra}]'"
            ) from None
