"""The pipeline file as written: pydantic models that check shape and ranges.

Cross-references (plans naming cells, a default naming a variant, protected cells) need the
whole file and are checked when the pipeline is built (``services.pipeline.build``).
docs/pipeline.md explains every field.
"""

from pydantic import BaseModel, ConfigDict, Field, model_validator

from schemas._types import Name
from schemas.records import Budget, Regime, Role, TaskFeatures


class Spec(BaseModel):
    """Every section forbids unknown keys, so a typo is an error rather than a silent no-op."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class VariantSpec(Spec):
    protocol: Name | None = None
    model: Name | None = None


class CellSpec(Spec):
    name: Name
    role: Role
    variants: list[VariantSpec] = Field(
        default_factory=list,
        max_length=64,
        description="empty: one variant without protocol or model",
    )
    default: str | None = Field(
        default=None,
        description="the action id of the default variant (unset: the first one listed)",
    )


class PoolSpec(Spec):
    """Cells and plans: all a pipeline routes, and what a scenario may write inline."""

    cells: list[CellSpec] | None = Field(default=None, min_length=1, max_length=64)
    plan: list[Name] | None = Field(default=None, min_length=1)
    plans: dict[Regime, list[Name]] | None = Field(default=None, min_length=1)

    @model_validator(mode="after")
    def _one_plan(self) -> "PoolSpec":
        if self.plan is not None and self.plans is not None:
            raise ValueError("give 'plan' (all regimes) or 'plans' (per regime), not both")
        if self.cells is not None and self.plan is None and self.plans is None:
            raise ValueError("cells need 'plan' or 'plans'")
        if self.cells is None and (self.plan is not None or self.plans is not None):
            raise ValueError("a plan needs the 'cells' it names")
        return self


class TaskClassSpec(Spec):
    name: Name
    description: str = Field(default="", max_length=2_000)
    features: TaskFeatures


class PipelineSpec(PoolSpec):
    name: Name
    description: str = Field(default="", max_length=4_000)
    protected: list[Name] = Field(
        default_factory=list, max_length=64, description="cells no policy may skip"
    )
    budget: Budget = Field(
        default_factory=Budget, description="of a trajectory whose task names none"
    )
    classes: list[TaskClassSpec] = Field(default_factory=list, max_length=256)

    @model_validator(mode="after")
    def _has_cells(self) -> "PipelineSpec":
        if self.cells is None:
            raise ValueError("a pipeline needs 'cells'")
        return self
