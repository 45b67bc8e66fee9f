"""The coordination-policy domain (docs/architecture.md): pure functions and data, no I/O."""

from services.policy.actions import candidate_actions, legal_cells, precondition_holds
from services.policy.beliefs import update_beliefs
from services.policy.cells import (
    PAPER_PLAN,
    Cell,
    CellPool,
    Variant,
    fixed_pipeline,
    make_pool,
    paper_pool,
    parse_action,
    skip_action,
)
from services.policy.graph import PolicyGraph
from services.policy.handoff import apply_delta, presence_mask
from services.policy.learning import backup
from services.policy.regime import detect_regime
from services.policy.reward import PAPER_REWARD, hybrid_reward
from services.policy.selection import (
    PAPER_SELECTION,
    Selection,
    exploration_constant,
    select,
    select_batch,
)
from services.policy.signature import Signature, fold
from services.policy.trajectory import (
    PolicySetup,
    Step,
    StepResult,
    absorb,
    advance,
    decide,
    rollout_id,
    signature_of,
    start_state,
    termination,
    trajectory_completed,
    trajectory_ids,
)

__all__ = [
    "PAPER_PLAN",
    "PAPER_REWARD",
    "PAPER_SELECTION",
    "Cell",
    "CellPool",
    "PolicyGraph",
    "PolicySetup",
    "Selection",
    "Signature",
    "Step",
    "StepResult",
    "Variant",
    "absorb",
    "advance",
    "apply_delta",
    "backup",
    "candidate_actions",
    "decide",
    "detect_regime",
    "exploration_constant",
    "fixed_pipeline",
    "fold",
    "hybrid_reward",
    "legal_cells",
    "make_pool",
    "paper_pool",
    "parse_action",
    "precondition_holds",
    "presence_mask",
    "rollout_id",
    "select",
    "select_batch",
    "signature_of",
    "skip_action",
    "start_state",
    "termination",
    "trajectory_completed",
    "trajectory_ids",
    "update_beliefs",
]
