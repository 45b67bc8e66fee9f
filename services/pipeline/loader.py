"""Finding and reading pipeline files: a shipped name (``paper``) or a path."""

from pathlib import Path

from services.pipeline.build import build_pipeline
from services.pipeline.spec import PipelineSpec
from services.policy.pipeline import Pipeline
from services.runtime.settings import Settings
from services.spec_files import SpecFileError, SpecLibrary, parse_spec


class PipelineError(SpecFileError):
    """A pipeline that cannot be used; one line per problem, each naming the file."""

    kind = "pipeline"


_LIBRARY = SpecLibrary("services.pipeline", "pipelines", PipelineError)

#: What a deployment routes when no pipeline is named anywhere.
DEFAULT_PIPELINE = "paper"


def shipped_pipelines() -> tuple[str, ...]:
    return _LIBRARY.names()


def load_pipeline(name_or_path: str | Path, relative_to: Path | None = None) -> Pipeline:
    """A shipped pipeline by name, or a pipeline file by path (a relative one starts at
    ``relative_to``, by default the working directory)."""
    text, source = _LIBRARY.locate(name_or_path, relative_to)
    return parse_pipeline(text, source)


def parse_pipeline(text: str, source: str) -> Pipeline:
    """Parse and validate pipeline YAML; ``source`` names it in every problem line."""
    return parse_spec(
        text, source, PipelineSpec, lambda spec: build_pipeline(spec, source), PipelineError
    )


def deployed_pipeline(settings: Settings) -> Pipeline:
    """The pipeline a service runs: ``settings.pipeline``, else the default. (The
    ``agensbus`` service commands fill the setting in from the scenario when it is unset.)"""
    return load_pipeline(settings.pipeline or DEFAULT_PIPELINE)
