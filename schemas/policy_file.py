"""The ``agensbus.policy/3`` document: a learned policy as plain, language-neutral JSON.

Version 2 added ``classes`` (the class floor of baseline-safe selection), version 3 each
class's ``paths`` (the quality of its trajectories per set of deviating actions, which the
floor's action veto reads). An ``agensbus.policy/2`` document reads as version 3 whose
classes have no paths, an ``agensbus.policy/1`` one as version 3 without classes;
everything else equal.
"""

from typing import Any, Final, Literal

from pydantic import AwareDatetime, Field, model_validator

from schemas._base import Record
from schemas._fields import TenantName
from schemas._types import ActionId, Name, SignatureText
from schemas.records import FoldSpec, RewardConfig, SelectionConfig

POLICY_FORMAT: Final = "agensbus.policy/3"
#: The formats a reader accepts: every earlier one migrates to ``POLICY_FORMAT``.
READABLE_FORMATS: Final = ("agensbus.policy/1", "agensbus.policy/2", POLICY_FORMAT)


class EdgeRecord(Record):
    """Statistics of one (signature, action) edge; Welford sums so shards merge exactly."""

    visits: int = Field(ge=0, description="completed visits that were backed up with a reward")
    weight: float | None = Field(
        default=None,
        ge=0.0,
        description="summed weight (judge confidence) of the rewards behind mean_reward and "
        "reward_m2, their count in a weighted merge; absent: equal to visits (every reward "
        "weighed 1, the paper)",
    )
    mean_reward: float = Field(default=0.0, description="mean of the rewards backed up")
    reward_m2: float = Field(
        default=0.0, ge=0.0, description="Welford's sum of squared deviations of the rewards"
    )
    token_mean: float = Field(default=0.0, ge=0.0, description="mean tokens per visit")
    token_m2: float = Field(
        default=0.0, ge=0.0, description="Welford's sum of squared deviations of the tokens"
    )
    failures: int = Field(default=0, ge=0, description="failed invokes; they carry no reward")
    retries: float | None = Field(
        default=None,
        ge=0.0,
        description="retries summed over the edge's visits and failures, kept by a learner "
        "that backs up expected retries (reward.expected_retries); absent: not kept (0)",
    )


class NodeRecord(Record):
    signature: SignatureText = Field(description="the folded state this node stands for")
    visits: int = Field(ge=0, description="visits of the signature")
    edges: dict[ActionId, EdgeRecord] = Field(
        default_factory=dict, description="statistics per action taken at the signature"
    )


class StreamRecord(Record):
    """Count, mean and M2 (sum of squared deviations) of a stream of judged qualities; the
    count is fractional after a weighted merge (a warm start's prior strength)."""

    count: float = Field(default=0.0, ge=0.0, description="trajectories counted")
    mean: float = Field(default=0.0, description="their mean judged quality")
    m2: float = Field(
        default=0.0, ge=0.0, description="sum of squared deviations from the mean (Welford)"
    )


class PathRecord(StreamRecord):
    """The judged quality of a class's trajectories that left the fixed pipeline with
    exactly these actions."""

    actions: list[ActionId] = Field(
        min_length=1, description="the deviating actions, sorted; each once"
    )


class ClassRecord(Record):
    """The class floor of one task class (``services.policy.floor``)."""

    baseline: StreamRecord = Field(
        default_factory=StreamRecord,
        description="judged quality of the class's trajectories that ran the fixed pipeline",
    )
    deviated: StreamRecord = Field(
        default_factory=StreamRecord,
        description="judged quality of the class's trajectories that left it somewhere",
    )
    paths: list[PathRecord] = Field(
        default_factory=list,
        description="per set of deviating actions (skips, variants other than their cell's "
        "default) taken together, the judged quality of the class's trajectories that took "
        "it, which the floor's action veto reads; no set appears twice (absent before "
        "agensbus.policy/3)",
    )

    @model_validator(mode="after")
    def _paths_unique(self) -> "ClassRecord":
        seen: set[frozenset[str]] = set()
        for path in self.paths:
            key = frozenset(path.actions)
            if key in seen or len(key) != len(path.actions):
                raise ValueError(f"path {sorted(key)} appears twice or names an action twice")
            seen.add(key)
        return self


class PolicyDocument(Record):
    format: Literal["agensbus.policy/3"] = Field(
        default=POLICY_FORMAT,
        description="the document format; always `agensbus.policy/3` (a reader migrates "
        "`agensbus.policy/1` and `agensbus.policy/2`)",
    )
    tenant: TenantName = "default"
    version: int = Field(default=0, ge=0, description="version of the policy")
    created_at: AwareDatetime | None = Field(
        default=None, description="when the document was written"
    )
    fold: FoldSpec = Field(default_factory=FoldSpec, description="how states fold into signatures")
    selection: SelectionConfig = Field(
        default_factory=SelectionConfig, description="the selection rules"
    )
    reward: RewardConfig = Field(default_factory=RewardConfig, description="the reward weights")
    nodes: list[NodeRecord] = Field(
        default_factory=list, description="one per signature; no signature appears twice"
    )
    classes: dict[Name, ClassRecord] = Field(
        default_factory=dict,
        description="per task class, the judged quality on and off its fixed pipeline, which "
        "the class floor of baseline-safe selection reads (absent in agensbus.policy/1)",
    )

    @model_validator(mode="before")
    @classmethod
    def _migrate(cls, data: Any) -> Any:
        """An ``agensbus.policy/1`` document is version 3 without classes, an
        ``agensbus.policy/2`` one version 3 whose classes have no paths."""
        if not isinstance(data, dict):
            return data
        found = data.get("format")
        if found == "agensbus.policy/1" and "classes" in data:
            raise ValueError("an agensbus.policy/1 document has no classes")
        if found == "agensbus.policy/2":
            classes = data.get("classes")
            if isinstance(classes, dict) and any(
                isinstance(c, dict) and "paths" in c for c in classes.values()
            ):
                raise ValueError("an agensbus.policy/2 document's classes have no paths")
        if found in READABLE_FORMATS[:-1]:
            return {**data, "format": POLICY_FORMAT}
        return data

    @model_validator(mode="after")
    def _signatures_unique(self) -> "PolicyDocument":
        seen: set[str] = set()
        for node in self.nodes:
            if node.signature in seen:
                raise ValueError(f"signature {node.signature!r} appears twice")
            seen.add(node.signature)
        return self


class GateFigures(Record):
    """What the off-policy gate found for a snapshot's policy (``services.policy.gate``):
    its doubly robust value on the trajectories the acting policy logged, and what the
    acting policy itself earned on them."""

    acting_version: int = Field(
        ge=0, description="the policy version that logged the trajectories (0: the cold start)"
    )
    trajectories: int = Field(
        ge=0, description="logged trajectories of the acting policy the estimate is built on"
    )
    estimate: float | None = Field(
        default=None,
        description="doubly robust estimate of the snapshot's mean reward (null: no trajectories)",
    )
    lower_bound: float | None = Field(
        default=None,
        description="lower end of the estimate's 95% interval (null: fewer than 2 trajectories)",
    )
    acting_estimate: float | None = Field(
        default=None,
        description="the acting policy's mean reward on the same trajectories (null: none)",
    )


__all__ = [
    "POLICY_FORMAT",
    "READABLE_FORMATS",
    "ClassRecord",
    "EdgeRecord",
    "GateFigures",
    "Name",
    "NodeRecord",
    "PathRecord",
    "PolicyDocument",
    "StreamRecord",
]
