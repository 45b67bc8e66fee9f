"""The arms a deployment or the learning benchmark can run: the router's rules, the reward
it learns from, and the named improvements over paper mode (docs/learning.md).

Pure data and functions: the router and learner read their arm from here, and the simulator
runs the same arms in process.
"""

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Literal, Protocol

from schemas.records import FoldSpec, RewardConfig, SelectionConfig
from services.policy.cells import CellPool
from services.policy.reward import PAPER_REWARD
from services.policy.trajectory import PolicySetup


class PoolSource(Protocol):
    """Anything that names the cells a deployment routes: a pipeline or a scenario."""

    @property
    def pool(self) -> CellPool: ...


PolicyName = Literal["fixed", "paper"]
POLICIES: tuple[PolicyName, ...] = ("fixed", "paper")


@dataclass(frozen=True)
class Arm:
    """One arm of the learning benchmark: the router's rules, the reward it learns from, and
    whether it starts from a policy learned on another scenario (``warm_weight`` scales the
    imported counts: 1.0 copies them verbatim, as the paper does). ``cold_twin`` names the
    arm with the same rules started empty, which a warm arm is compared against."""

    name: str
    selection: SelectionConfig = field(default_factory=SelectionConfig)
    fold: FoldSpec = field(default_factory=FoldSpec)
    reward: RewardConfig = PAPER_REWARD
    allow_skip: bool = True
    warm_weight: float | None = None
    cold_twin: str | None = None

    def setup(self, source: PoolSource, seed: int) -> PolicySetup:
        return PolicySetup(
            pool=source.pool,
            fold=self.fold,
            selection=self.selection,
            allow_skip=self.allow_skip,
            seed=seed,
        )

    def with_switches(self, name: str, switches: Sequence[str]) -> "Arm":
        """This arm with the named improvements (``SWITCHES``) turned on; when one of them
        starts it warm, its cold twin is this arm with the others only."""
        arm = replace(self, name=name)
        for switch in switches:
            arm = SWITCHES[switch](arm)
        if arm.warm_weight is not None and arm.cold_twin is None:
            cold = [s for s in switches if s not in WARM_SWITCHES]
            arm = replace(arm, cold_twin="+".join((self.name, *cold)))
        return arm


def _selection(**changes: object) -> Callable[[Arm], Arm]:
    return lambda arm: replace(arm, selection=arm.selection.model_copy(update=changes))


def _reward(**changes: object) -> Callable[[Arm], Arm]:
    return lambda arm: replace(arm, reward=arm.reward.model_copy(update=changes))


#: The improvements over paper mode, each a config switch; docs/learning.md measures them.
SWITCHES: dict[str, Callable[[Arm], Arm]] = {
    # A finite optimistic prior: an untried action looks as good as a very good trajectory,
    # not infinitely good, so ~26 untried actions per root node stop forcing exploration.
    "optimistic_prior": _selection(untried_score=0.9),
    # Exploration that actually decays (the paper floors c at 0.5, which dwarfs the gaps).
    "decaying_c": _selection(c_min=0.05, c_initial=0.5, c_half_life=20.0),
    # Decide cells in plan order: no evidence gathered after the draft it should inform.
    "next_in_plan": _selection(candidates="next_in_plan"),
    # Quality first, then tokens: learn from the judge's score alone and the tokens each
    # choice went on to cost, and take the cheapest action whose mean quality is within
    # 0.02 of the best.
    "quality_then_tokens": lambda arm: replace(
        arm,
        selection=arm.selection.model_copy(update={"cheap_within": 0.02}),
        reward=arm.reward.model_copy(
            update={"cost_weight": 0.0, "retry_penalty": 0.0, "tokens_to_go": True}
        ),
    ),
    # Baseline-safe selection: keep the fixed pipeline's action unless an alternative is
    # proven no worse than it less 0.01; explore otherwise on a decaying share of decisions.
    "baseline_safe": _selection(baseline_tolerance=0.01, explore_share=0.4),
    # The class floor: a class leaves its pipeline only while its quality off it, at the
    # lower confidence bound, keeps the class at the pipeline's less 0.01 a trajectory and
    # a learning budget of 2.0 (a conservative bandit per class).
    "class_floor": _selection(baseline_tolerance=0.01, baseline_floor="class", explore_budget=2.0),
    # The class floor's action veto: a class stops being offered a skip or variant once
    # its trajectories that took it are, at their upper confidence bound, below the
    # pipeline's quality less 0.01 (the rate of one bad action, which the floor's
    # cumulative bound does not limit); docs/learning.md.
    "action_veto": _selection(action_veto=True),
    # Softmax over scores, the exact propensity logged on every decision.
    "softmax": _selection(temperature=0.01),
    # 5% of the decisions a uniform candidate, the exact propensity logged: what the
    # off-policy gate needs of a greedy arm (docs/learning.md measures its cost).
    "explore": _selection(explore_epsilon=0.05),
    # One node visit per trajectory: a skip chain at one signature does not inflate N.
    "node_visit_once": _reward(node_visit_once=True),
    # A cost term that keeps charging past 8k tokens: at the paper's slope (8k), or at 2/3, 1/2,
    # 1/3 of it; docs/learning.md measures the quality each trades for tokens.
    "linear_cost": _reward(cost_shape="linear"),
    "linear_cost_12k": _reward(cost_shape="linear", token_cap=12_000),
    "linear_cost_16k": _reward(cost_shape="linear", token_cap=16_000),
    "linear_cost_24k": _reward(cost_shape="linear", token_cap=24_000),
    # Judge confidence weighs a reward in an edge's count as well as its sum (the paper
    # scales the reward instead, which shrinks means toward 0 rather than trusting less).
    "confidence_weighted": _reward(confidence_weighted=True),
    # Learn from each edge's expected retries, not the trajectory's realized ones: a control
    # variate that removes the noise of chance retries from small reward gaps.
    "expected_retries": _reward(expected_retries=True),
    "expected_tokens": _reward(expected_tokens=True),
    # Back up to each edge the reward as if later decisions had been greedy: exploration
    # downstream stops lowering the value of the choices before it.
    "greedy_continuation": _reward(greedy_continuation=True),
    # Discounting: recent rewards weigh at least 5% each, for worlds that change.
    "discount": _reward(recency_floor=0.05),
    # The task class in the signature: classes of one regime stop sharing nodes.
    "class_fold": lambda arm: replace(arm, fold=FoldSpec(extra_keys=["task_class"])),
    # Classes keep nodes of their own, and each edge borrows from its class's other nodes
    # and the regime's other classes as far as they agree (empirical Bayes shrinkage).
    "shared_evidence": lambda arm: replace(
        arm,
        fold=FoldSpec(extra_keys=["task_class"]),
        selection=arm.selection.model_copy(update={"share_evidence": True}),
    ),
    # Warm start with imported counts halved: a prior the target's own visits soon outweigh,
    # not a verbatim copy.
    "warm_prior": lambda arm: replace(arm, warm_weight=0.5),
}

WARM_SWITCHES = frozenset({"warm_prior"})

PAPER_ARM = Arm("paper")
#: The recommended arm's improvements over paper mode, without its floor.
FREE_SWITCHES: tuple[str, ...] = (
    "optimistic_prior",
    "decaying_c",
    "next_in_plan",
    "node_visit_once",
)
AGENSBUS_SWITCHES: tuple[str, ...] = (*FREE_SWITCHES, "class_floor", "action_veto")
ARMS: dict[str, Arm] = {
    "fixed": Arm("fixed", selection=SelectionConfig(mode="fixed")),
    "noskip": Arm("noskip", allow_skip=False),
    "paper": PAPER_ARM,
    "warm": replace(PAPER_ARM, name="warm", warm_weight=1.0, cold_twin="paper"),
    "agensbus": PAPER_ARM.with_switches("agensbus", AGENSBUS_SWITCHES),
    # The class floor without its action veto (the recommended arm before the veto).
    "agensbus-floor": PAPER_ARM.with_switches("agensbus-floor", (*FREE_SWITCHES, "class_floor")),
    # The same learning without the class floor: faster where it is safe, unsafe elsewhere.
    "agensbus-free": PAPER_ARM.with_switches("agensbus-free", FREE_SWITCHES),
    # Trades some plateau quality on the hardest classes for tokens (docs/learning.md).
    "agensbus-lean": PAPER_ARM.with_switches(
        "agensbus-lean", (*AGENSBUS_SWITCHES, "linear_cost_16k")
    ),
    # The node rule instead of the class floor: never leaves the pipeline at a node without
    # evidence for the move there (docs/learning.md).
    "agensbus-node-safe": PAPER_ARM.with_switches(
        "agensbus-node-safe", (*FREE_SWITCHES, "baseline_safe")
    ),
    "agensbus-warm": replace(
        PAPER_ARM.with_switches("agensbus-warm", (*AGENSBUS_SWITCHES, "warm_prior")),
        cold_twin="agensbus",
    ),
}


def arm_named(name: str) -> Arm:
    """A named arm, or ``paper+switch+...``: paper mode with the listed switches on."""
    if name in ARMS:
        return ARMS[name]
    base, *switches = name.split("+")
    unknown = [s for s in switches if s not in SWITCHES]
    if base not in ARMS or not switches or unknown:
        raise KeyError(
            f"unknown arm {name!r}: arms are {', '.join(ARMS)}, or an arm followed by "
            f"+switch for switches {', '.join(SWITCHES)}"
        )
    return ARMS[base].with_switches(name, switches)


def deployed_arm(name: str) -> Arm:
    """The arm a deployment runs (``settings.policy_arm``): the router takes its setup
    (``Arm.setup`` with the deployment's seed), the learner its setup and reward, exactly as
    the engine does. A warm arm's start is a learned graph, which a setting cannot carry:
    import a policy file into a deployment of its cold rules instead."""
    arm = arm_named(name)
    if arm.warm_weight is not None:
        raise ValueError(
            f"arm {name!r} starts warm: deploy its cold rules and import the learned policy"
        )
    return arm


def policy_setup(
    source: PoolSource,
    policy: PolicyName,
    *,
    fold: FoldSpec | None = None,
    allow_skip: bool = True,
) -> PolicySetup:
    """Router rules for an arm: ``fixed`` runs the plan's default variants and never reads
    the graph; ``paper`` is the paper's selector."""
    return PolicySetup(
        pool=source.pool,
        fold=fold or FoldSpec(),
        selection=SelectionConfig(mode=policy),
        allow_skip=allow_skip,
    )
