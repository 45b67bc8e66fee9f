"""The ``agensbus.policy/1`` document: a learned policy as plain, language-neutral JSON."""

from typing import Final, Literal

from pydantic import AwareDatetime, Field, model_validator

from schemas._base import Record
from schemas._types import ActionId, Name, SignatureText
from schemas.records import FoldSpec, RewardConfig, SelectionConfig

POLICY_FORMAT: Final = "agensbus.policy/1"


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
    mean_reward: float = 0.0
    reward_m2: float = Field(default=0.0, ge=0.0)
    token_mean: float = Field(default=0.0, ge=0.0)
    token_m2: float = Field(default=0.0, ge=0.0)
    failures: int = Field(default=0, ge=0)
    retries: float | None = Field(
        default=None,
        ge=0.0,
        description="retries summed over the edge's visits and failures, kept by a learner "
        "that backs up expected retries (reward.expected_retries); absent: not kept (0)",
    )


class NodeRecord(Record):
    signature: SignatureText
    visits: int = Field(ge=0)
    edges: dict[ActionId, EdgeRecord] = Field(default_factory=dict)


class PolicyDocument(Record):
    format: Literal["agensbus.policy/1"] = POLICY_FORMAT
    tenant: Name = "default"
    version: int = Field(default=0, ge=0)
    created_at: AwareDatetime | None = None
    fold: FoldSpec = Field(default_factory=FoldSpec)
    selection: SelectionConfig = Field(default_factory=SelectionConfig)
    reward: RewardConfig = Field(default_factory=RewardConfig)
    nodes: list[NodeRecord] = Field(default_factory=list)

    @model_validator(mode="after")
    def _signatures_unique(self) -> "PolicyDocument":
        seen: set[str] = set()
        for node in self.nodes:
            if node.signature in seen:
                raise ValueError(f"signature {node.signature!r} appears twice")
            seen.add(node.signature)
        return self


__all__ = ["POLICY_FORMAT", "EdgeRecord", "Name", "NodeRecord", "PolicyDocument"]
