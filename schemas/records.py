"""Records carried inside events: task features, handoff, beliefs, the trajectory state."""

from enum import StrEnum
from typing import Annotated, Literal

from pydantic import Field, model_validator

from schemas._base import Record
from schemas._fields import (
    CellName,
    Constraints,
    Critique,
    DraftAnswer,
    Evidence,
    MergedAnswer,
    Propensity,
    Retries,
    StateSignature,
    StepIndex,
    Subproblem,
    TakenAction,
    TaskClass,
    TaskGoal,
    TaskRef,
    TrajectoryRef,
)
from schemas._types import ActionId, Name, PayloadDigest, ShortText, Unit


class Regime(StrEnum):
    STRAIGHTFORWARD = "straightforward"
    AMBIGUOUS = "ambiguous"
    CONTRADICTORY = "contradictory"
    EVIDENCE_HEAVY = "evidence_heavy"
    HIGH_RISK = "high_risk"
    EXPLORATORY = "exploratory"


DetectedRegime = Annotated[
    Regime, Field(description="the regime detected from the features; it picks the activation plan")
]


class Role(StrEnum):
    """What a cell does; belief updates and preconditions depend on the role only."""

    PLANNER = "planner"
    MEMORY = "memory"
    WEB_SEARCH = "web_search"
    SOLVER = "solver"
    CRITIC = "critic"
    VERIFIER = "verifier"
    SYNTHESIZER = "synthesizer"
    EVALUATOR = "evaluator"


class Verdict(StrEnum):
    SUPPORTED = "supported"
    PARTIALLY_SUPPORTED = "partially_supported"
    UNSUPPORTED = "unsupported"


class TaskFeatures(Record):
    """The paper's task descriptors, each in [0, 1]."""

    ambiguity_level: Unit = Field(default=0.0, description="how ambiguous the task is")
    contradiction_risk: Unit = Field(
        default=0.0, description="how likely sources or answers contradict each other"
    )
    evidence_availability: Unit = Field(
        default=0.0, description="how much evidence is there to retrieve"
    )
    verification_need: Unit = Field(default=0.0, description="how much the answer needs checking")
    novelty_level: Unit = Field(default=0.0, description="how unlike known tasks the task is")
    time_horizon_complexity: Unit = Field(
        default=0.0, description="how many steps or how long a horizon it needs"
    )
    cost_sensitivity: Unit = Field(default=0.0, description="how much token cost matters")
    requires_factual_grounding: Unit = Field(
        default=0.0, description="how much the answer must rest on evidence"
    )


Features = Annotated[
    TaskFeatures, Field(description="the task's descriptors; they decide the regime")
]


class Verification(Record):
    verdict: Verdict = Field(description="whether the draft is supported by the evidence")
    rationale: ShortText = Field(default="", description="why")


VerifierVerdict = Annotated[Verification | None, Field(description="the verifier's verdict")]


#: What a handoff field holds in place of content stored by reference, before the digest.
PAYLOAD_MARKER = "agensbus-payload:"


class PayloadRef(Record):
    """Handoff content stored outside the event (a claim check). The handoff field holds
    ``agensbus-payload:<digest>`` in its place; the bytes are in the payload store under
    the digest, which whoever reads them checks."""

    digest: PayloadDigest = Field(description="the key of the content in the payload store")
    bytes: int = Field(ge=0, description="size of the stored UTF-8 content")
    field: Name = Field(description="the handoff field whose value it replaces")


class Handoff(Record):
    """What the cells of a trajectory have written so far."""

    goal: TaskGoal
    subproblem: Subproblem = None
    constraints: Constraints = Field(default_factory=list)
    evidence: Evidence = Field(default_factory=list)
    draft_answer: DraftAnswer = None
    critique: Critique = None
    verification: VerifierVerdict = None
    merged_answer: MergedAnswer = None
    payloads: list[PayloadRef] = Field(
        default_factory=list, max_length=128, description="content stored by reference"
    )


class HandoffDelta(Record):
    """The fields one cell wrote; ``None`` means untouched, evidence is appended."""

    subproblem: Subproblem = None
    evidence: Evidence = Field(default_factory=list)
    draft_answer: DraftAnswer = None
    critique: Critique = None
    verification: VerifierVerdict = None
    merged_answer: MergedAnswer = None
    payloads: list[PayloadRef] = Field(
        default_factory=list, max_length=128, description="content stored by reference"
    )


class Beliefs(Record):
    """The router's belief about the trajectory; starts at the paper's initial values."""

    correctness: Unit = Field(default=0.1, description="belief that the current answer is correct")
    uncertainty: Unit = Field(default=0.9, description="how unsure the trajectory still is")
    handoff_quality: Unit = Field(
        default=0.2, description="quality of what the cells have handed on"
    )
    contradiction_risk: Unit = Field(
        default=0.5, description="risk that the answer contradicts the evidence"
    )
    evidence_sufficiency: Unit = Field(
        default=0.1, description="whether the evidence suffices for an answer"
    )


class StepStatus(StrEnum):
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    SKIPPED = "skipped"


class VisitedEdge(Record):
    """One (signature, action) the trajectory took, with the probability it was taken."""

    step: StepIndex
    signature: StateSignature
    action: TakenAction
    propensity: Propensity
    status: StepStatus = Field(description="how the step ended")
    tokens: int = Field(default=0, ge=0, description="tokens the step used")
    retries: Retries = Field(default=0, ge=0, le=100)


class PendingStep(Record):
    """The invoke the router is waiting on; resolved into a VisitedEdge by its outcome."""

    step: StepIndex
    signature: StateSignature
    action: TakenAction
    cell: CellName
    propensity: Propensity


class Budget(Record):
    max_steps: int = Field(
        default=24, ge=1, le=1_000, description="decisions allowed, invokes and skips"
    )
    max_tokens: int = Field(default=60_000, ge=1, description="tokens allowed")


class TrajectoryState(Record):
    """Everything needed to take the next step; it rides in Decision and StepOutcome."""

    task_id: TaskRef
    trajectory_id: TrajectoryRef
    regime: DetectedRegime
    task_class: TaskClass = None
    features: Features
    plan: list[Name] = Field(
        min_length=1,
        max_length=64,
        description="the activation plan: cells in rule-based-prior order",
    )
    handoff: Handoff = Field(description="what the cells have written so far")
    beliefs: Beliefs = Field(
        default_factory=Beliefs, description="the router's beliefs about the trajectory"
    )
    invoked: list[Name] = Field(
        default_factory=list, max_length=64, description="cells already invoked"
    )
    skipped: list[Name] = Field(
        default_factory=list, max_length=64, description="cells already skipped"
    )
    visited: list[VisitedEdge] = Field(
        default_factory=list,
        max_length=1_000,
        description="the edges taken so far, with their propensities",
    )
    pending: PendingStep | None = Field(default=None, description="the invoke awaiting its outcome")
    step: int = Field(default=0, ge=0, le=1_000, description="index of the next decision")
    tokens_used: int = Field(default=0, ge=0, description="tokens used so far")
    retries: int = Field(default=0, ge=0, description="retries so far")
    failures: int = Field(default=0, ge=0, description="failed invokes so far")
    done: bool = Field(default=False, description="the evaluator declared the answer final")
    halted: bool = Field(default=False, description="a governance rule halted the trajectory")
    halt_reason: Name | None = Field(
        default=None,
        description="why governance halted the trajectory: the failure kind that stops it "
        "at once (auth, quota) or repeated_failures",
    )
    budget: Budget = Field(
        default_factory=Budget, description="the limits the trajectory runs under"
    )
    fold_keys: dict[Name, Name] = Field(
        default_factory=dict,
        max_length=8,
        description="values of the fold's extra keys, e.g. `task_class`",
    )
    rollouts: int = Field(
        default=1,
        ge=1,
        le=16,
        description="trajectories run for the task, this one included; the judge scores "
        "them as one group",
    )

    @model_validator(mode="after")
    def _cells_belong_to_plan(self) -> "TrajectoryState":
        plan = set(self.plan)
        unknown = [c for c in (*self.invoked, *self.skipped) if c not in plan]
        if unknown:
            raise ValueError(f"cells {unknown} are not in the plan {self.plan}")
        return self


class ActionScore(Record):
    """The selector's view of one candidate action."""

    action: ActionId = Field(description="a candidate action")
    score: float | None = Field(
        description="UCB score; null stands for +infinity (an action never tried)"
    )
    mean: float = Field(
        default=0.0, description="mean reward of the action at this signature; 0 if never completed"
    )
    bonus: float | None = Field(default=0.0, description="exploration term; null for +infinity")
    penalty: float = Field(default=0.0, description="failure penalty λ·f/(n+f)")
    visits: int = Field(
        default=0, ge=0, description="completed visits of the action at this signature"
    )
    failures: int = Field(
        default=0, ge=0, description="failed visits of the action at this signature"
    )


class Axis(StrEnum):
    GOAL_ACHIEVEMENT = "goal_achievement"
    GROUNDING = "grounding"
    COORDINATION = "coordination"
    RECOVERY = "recovery"


class JudgeScore(Record):
    """One judge's rubric scores for one trajectory."""

    judge: Name = Field(description="the judge's name")
    axes: dict[Axis, Unit] = Field(description="score per rubric axis")
    overall: Unit = Field(description="the rubric-weighted overall score")


# --- configuration records carried by policy files and snapshots -------------------------


class FoldSpec(Record):
    """How the observable state folds into a signature (versioned)."""

    version: Literal[1] = Field(default=1, description="fold version; part of every signature")
    granularity: float = Field(
        default=0.1, gt=0.0, le=1.0, description="bucket width of the beliefs; must divide 1 evenly"
    )
    extra_keys: list[Name] = Field(
        default_factory=list,
        max_length=8,
        description="extra keys folded into the signature, in this order",
    )

    @model_validator(mode="after")
    def _granularity_divides_one(self) -> "FoldSpec":
        steps = round(1.0 / self.granularity)
        if abs(steps * self.granularity - 1.0) > 1e-9:
            raise ValueError(
                f"granularity {self.granularity} must divide 1 evenly (e.g. 0.1, 0.25)"
            )
        return self


class SelectionConfig(Record):
    """Selection constants; the defaults are the paper's."""

    mode: Literal["paper", "fixed"] = Field(
        default="paper", description="`paper`: UCB once confident; `fixed`: always the plan order"
    )
    confidence_threshold: int = Field(
        default=5, ge=0, description="signature visits below which the plan order acts"
    )
    c_min: float = Field(default=0.5, ge=0.0, description="floor of the exploration constant")
    c_initial: float = Field(
        default=1.4, ge=0.0, description="exploration constant of an unvisited signature"
    )
    c_half_life: float = Field(
        default=50.0, gt=0.0, description="signature visits over which the constant halves"
    )
    failure_lambda: float = Field(
        default=0.5, ge=0.0, description="weight λ of the failure penalty"
    )
    untried_score: float | None = Field(
        default=None,
        description="score of an action never tried (no visits, no failures); null is the "
        "paper's +infinity, a number is a finite optimistic prior so exploration can end",
    )
    temperature: float = Field(
        default=0.0,
        ge=0.0,
        description="0 picks the best score (the paper, propensity 1); above 0 samples from "
        "a softmax over scores at this temperature and logs the exact probability",
    )
    candidates: Literal["any_legal", "next_in_plan"] = Field(
        default="any_legal",
        description="any_legal: every variant and skip of every legal cell (the paper); "
        "next_in_plan: only the first legal cell of the plan, run on some variant or skipped",
    )
    cheap_within: float | None = Field(
        default=None,
        ge=0.0,
        description="two-stage greedy choice: when the best-scoring action is a tried one, "
        "take instead the one of least token mean among the tried actions whose reward mean "
        "is within this margin of the best tried mean; null takes the best score, as the paper",
    )
    baseline_tolerance: float | None = Field(
        default=None,
        ge=0.0,
        le=1.0,
        description="baseline-safe selection: the fixed pipeline's action (the plan's next "
        "cell on its default variant) is kept at a node unless an alternative has at least "
        "baseline_min_visits visits there and its lower confidence bound (mean less "
        "baseline_z standard errors) is at least the baseline's mean less this tolerance; "
        "null selects by score alone, as the paper",
    )
    baseline_floor: Literal["node", "class"] = Field(
        default="node",
        description="where baseline-safe selection keeps the floor: node, the rule above at "
        "every node; class, a conservative gate per task class: the class follows its scores "
        "while the judged quality of its trajectories off the fixed pipeline, at their lower "
        "confidence bound, keeps the class's cumulative quality at the pipeline's less the "
        "tolerance per trajectory, and runs the pipeline otherwise",
    )
    baseline_min_visits: int = Field(
        default=5,
        ge=1,
        description="visits an alternative needs at a node before baseline-safe selection "
        "may prefer it to the baseline (the SPIBB count threshold)",
    )
    baseline_z: float = Field(
        default=1.645,
        ge=0.0,
        description="standard errors below its mean at which baseline-safe selection reads "
        "an alternative's lower confidence bound (1.645: one-sided 95%)",
    )
    explore_share: float = Field(
        default=0.0,
        ge=0.0,
        le=1.0,
        description="with baseline-safe selection: the probability that a decision whose "
        "best score is neither the baseline nor a proven alternative explores it anyway "
        "(drawn with the decision's uniform, logged as the propensity); 0 never explores "
        "away from what the evidence supports",
    )
    explore_budget: float = Field(
        default=0.0,
        ge=0.0,
        description="with the class floor: the judged quality a class may lose, summed over "
        "its trajectories off the fixed pipeline and counted at their lower confidence bound, "
        "beyond the tolerance per trajectory, while it learns; 0 leaves it only the tolerance",
    )
    action_veto: bool = Field(
        default=False,
        description="with the class floor: a class stops being offered a deviating action (a "
        "skip, or a variant other than its cell's default) once the upper confidence bound "
        "(baseline_z standard errors, the variance at least the pooled variance of the "
        "pipeline's runs) of the judged quality of its trajectories that took it is below "
        "the pipeline's mean on the class less baseline_tolerance",
    )
    explore_epsilon: float = Field(
        default=0.0,
        ge=0.0,
        le=0.5,
        description="epsilon exploration: the share of decisions (drawn with the decision's "
        "uniform) that take a candidate uniformly at random instead of the rules' choice, so "
        "that every candidate has a logged propensity of at least epsilon over their number "
        "and off-policy estimates of another policy are not degenerate; never where the "
        "fixed pipeline is kept (a closed class floor, a protected class or regime); 0 never",
    )
    share_evidence: bool = Field(
        default=False,
        description="score each edge with its reward mean shrunk towards the same action's "
        "mean over the other nodes of its task class and, through them, over the other "
        "classes of its regime, with strengths estimated from the between-child variance "
        "against the noise (empirical Bayes); the confidence threshold and the exploration "
        "constant count the visits of the node without its extra keys, which the estimates "
        "draw on. Needs a fold that keys the class",
    )
    protected_classes: list[Name] = Field(
        default_factory=list,
        max_length=256,
        description="task classes that baseline-safe selection keeps on the fixed pipeline: "
        "they never explore, nor follow evidence that other classes left at shared nodes",
    )
    protected_regimes: list[Regime] = Field(
        default_factory=list,
        description="regimes that baseline-safe selection keeps on the fixed pipeline",
    )

    @model_validator(mode="after")
    def _node_rule_is_greedy(self) -> "SelectionConfig":
        node_rule = self.baseline_tolerance is not None and self.baseline_floor == "node"
        if node_rule and (self.temperature > 0.0 or self.cheap_within is not None):
            raise ValueError(
                "the node rule of baseline-safe selection takes neither a temperature nor "
                "cheap_within: it draws its own exploration with explore_share"
            )
        if self.explore_epsilon > 0.0 and (node_rule or self.temperature > 0.0):
            raise ValueError(
                "explore_epsilon mixes a uniform draw into a greedy choice: it takes neither "
                "a temperature nor the node rule, which draw their own"
            )
        return self


class RewardConfig(Record):
    """Hybrid reward weights; the defaults are the paper's."""

    quality_weight: float = Field(default=1.0, description="weight of the quality score")
    cost_weight: float = Field(default=0.3, description="weight of the token cost")
    token_cap: int = Field(
        default=8_000, gt=0, description="tokens at which the cost term saturates"
    )
    retry_penalty: float = Field(default=0.15, description="penalty per retry")
    cost_shape: Literal["capped", "linear"] = Field(
        default="capped",
        description="capped: cost min(tokens/token_cap, 1) (the paper); linear: tokens/token_cap "
        "without the cap, so spending beyond it still costs",
    )
    node_visit_once: bool = Field(
        default=False,
        description="count a signature's visit once per trajectory in backup, however many "
        "decisions (a skip chain) the trajectory took there; false counts every decision",
    )
    confidence_weighted: bool = Field(
        default=False,
        description="weigh each reward by the judge's confidence in both an edge's count and "
        "its sum (a weighted mean: unsure scores move it less); false weighs every reward 1, "
        "as the paper",
    )
    recency_floor: float = Field(
        default=0.0,
        ge=0.0,
        lt=1.0,
        description="discounting for a changing world: each update moves an edge's reward "
        "and token means at least this share of the way to the new observation (as if older "
        "ones were discounted by 1 - floor); 0 keeps the exact running mean of the paper",
    )
    expected_retries: bool = Field(
        default=False,
        description="back up a reward whose retry charge counts each visited edge's mean "
        "retries so far (a control variate) instead of the trajectory's realized retries, so "
        "chance failures the choice did not cause do not drown small reward gaps; false "
        "backs up the realized reward, as the paper",
    )
    expected_tokens: bool = Field(
        default=False,
        description="likewise for the token cost: charge the sum of the visited edges' mean "
        "tokens so far (a failed or first visit counts its own) instead of the trajectory's "
        "realized tokens; false charges the realized tokens, as the paper",
    )
    tokens_to_go: bool = Field(
        default=False,
        description="back up as an edge's tokens those the trajectory spent from that edge "
        "on (what choosing it went on to cost), not the edge's own; false backs up its own, "
        "as the paper",
    )
    greedy_continuation: bool = Field(
        default=False,
        description="back up to each edge the reward the trajectory would have earned had "
        "every later decision taken its node's best-mean action for the same cell: each later "
        "step adds (best mean - mean of the action taken) there, so exploration downstream "
        "stops lowering the value of the choices before it; false backs up the realized "
        "reward to every edge, as the paper",
    )
