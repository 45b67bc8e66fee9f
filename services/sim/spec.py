"""The scenario file as written: pydantic models that check shape and ranges.

Cross-references (does a selector match a variant, does every variant get its token figures)
need the whole file and are checked when the scenario is built (``services.sim.scenario``).
See docs/scenarios.md for the meaning of every field.
"""

from typing import Annotated, Any

from pydantic import Field, model_validator

from schemas._types import Name, Unit
from schemas.records import TaskFeatures
from services.pipeline.spec import PoolSpec, Spec

#: A change of latent quality.
Gain = Annotated[float, Field(ge=-1.0, le=1.0)]

#: Evidence items one retrieval or search step returns (the handoff holds at most 64).
EvidenceCount = Annotated[int, Field(ge=0, le=64)]


class Dist(Spec):
    """A non-negative quantity drawn per attempt: gamma with this mean and coefficient of
    variation ``spread`` (0 means always the mean). A bare number means spread 0."""

    mean: float = Field(ge=0.0)
    spread: float = Field(default=0.0, ge=0.0, le=3.0)

    @model_validator(mode="before")
    @classmethod
    def _bare_number(cls, value: Any) -> Any:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return {"mean": value}
        return value

    def scaled(self, factor: float) -> "Dist":
        return Dist(mean=self.mean * factor, spread=self.spread)


class VariantDefaults(Spec):
    """Defaults for the variants a selector matches. Costs: the most specific selector that
    sets a field wins. Gains: every matching selector's gain is added."""

    tokens_in: Dist | None = None
    tokens_out: Dist | None = None
    latency_s: Dist | None = None
    failure: float | None = Field(default=None, ge=0.0, le=1.0)
    gain: Gain = 0.0


class ClassEffect(Spec):
    """A class's adjustment of the variants a selector matches: ``gain`` is added,
    ``token_factor`` multiplies both token means (factors of several selectors multiply),
    ``failure`` replaces the default (most specific selector wins)."""

    gain: Gain = 0.0
    token_factor: float = Field(default=1.0, gt=0.0, le=20.0)
    failure: float | None = Field(default=None, ge=0.0, le=1.0)


class JudgeSpec(Spec):
    name: Name
    noise_sd: float = Field(ge=0.0, le=1.0)
    bias: float = Field(default=0.0, ge=-1.0, le=1.0)


class TaskClassSpec(Spec):
    name: Name
    description: str = Field(min_length=1, max_length=2_000)
    features: TaskFeatures | None = Field(
        default=None, description="unset: the features of the pipeline's class of this name"
    )
    count: int = Field(ge=0, le=10_000, description="tasks of this class per epoch")
    base_quality: Unit = Field(description="latent quality of the fixed pipeline, no failures")
    effects: dict[str, ClassEffect] = Field(default_factory=dict)
    absent: dict[Name, Gain] = Field(
        default_factory=dict, description="quality change when a cell never ran successfully"
    )
    evidence: dict[Name, EvidenceCount] = Field(
        default_factory=dict, description="evidence items returned, by cell or role"
    )
    evidence_bytes: int = Field(
        default=0,
        ge=0,
        le=8_388_608,
        description="pad each evidence item to this many bytes (a document-sized handoff); "
        "0 keeps items short",
    )


class ScenarioSpec(PoolSpec):
    """A simulated world over a pipeline: the one ``pipeline`` names (a shipped name, or a
    path relative to the scenario file), or the scenario's own ``cells`` and plan."""

    name: Name
    description: str = Field(min_length=1, max_length=4_000)
    pipeline: str | None = Field(default=None, min_length=1, max_length=1_000)
    max_retries: int = Field(default=1, ge=0, le=10)
    defaults: dict[str, VariantDefaults] = Field(min_length=1)
    absent: dict[Name, Gain] = Field(default_factory=dict)
    evidence: dict[Name, EvidenceCount] = Field(default_factory=dict)
    judges: list[JudgeSpec] = Field(min_length=1, max_length=16)
    classes: list[TaskClassSpec] = Field(min_length=1, max_length=256)

    @model_validator(mode="after")
    def _one_pipeline(self) -> "ScenarioSpec":
        if (self.pipeline is None) == (self.cells is None):
            raise ValueError("give exactly one of 'pipeline' or 'cells'")
        return self
