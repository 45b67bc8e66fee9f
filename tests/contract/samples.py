"""One valid instance of every contract, with every field set, for the contract tests."""

from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel

from schemas.events import (
    ActionKind,
    DeadLetter,
    Decision,
    DecisionReason,
    FailureKind,
    LearnerCheckpoint,
    PolicySnapshot,
    RewardObserved,
    RewardSource,
    StepOutcome,
    TaskSubmitted,
    Termination,
    TopicOffset,
    TrajectoryCompleted,
)
from schemas.policy_file import (
    ClassRecord,
    EdgeRecord,
    GateFigures,
    NodeRecord,
    PolicyDocument,
    StreamRecord,
)
from schemas.records import (
    ActionScore,
    Axis,
    Beliefs,
    Budget,
    FoldSpec,
    Handoff,
    HandoffDelta,
    JudgeScore,
    PendingStep,
    Regime,
    RewardConfig,
    SelectionConfig,
    StepStatus,
    TaskFeatures,
    TrajectoryState,
    Verdict,
    Verification,
    VisitedEdge,
)

TRAJECTORY = "incident-0042.r1"
SIGNATURE = "v1|evidence_heavy|1010000|c1.u8.r5.e1|task_class=replication"
ENVELOPE = {
    "event_id": "0f1e2d3c4b5a69788796a5b4c3d2e1f0",
    "produced_at": datetime(2026, 5, 1, 12, 0, 30, 250_000, tzinfo=UTC),
    "tenant": "acme",
}
FEATURES = TaskFeatures(
    ambiguity_level=0.3,
    contradiction_risk=0.2,
    evidence_availability=0.8,
    verification_need=0.7,
    novelty_level=0.4,
    time_horizon_complexity=0.5,
    cost_sensitivity=0.3,
    requires_factual_grounding=0.9,
)
BUDGET = Budget(max_steps=12, max_tokens=20_000)


def _state() -> TrajectoryState:
    return TrajectoryState(
        task_id="incident-0042",
        trajectory_id=TRAJECTORY,
        regime=Regime.EVIDENCE_HEAVY,
        task_class="replication",
        features=FEATURES,
        plan=["planner", "memory", "solver", "verifier", "evaluator"],
        handoff=Handoff(
            goal="Find the root cause of the replication lag.",
            subproblem="Which follower falls behind, and why?",
            constraints=["cite log lines"],
            evidence=["follower-3 fsync p99 = 4 s", "leader ISR shrank at 11:58"],
            draft_answer="Slow disk on follower-3.",
            critique="The ISR shrink could also be a network partition.",
            verification=Verification(verdict=Verdict.PARTIALLY_SUPPORTED, rationale="no net"),
            merged_answer="Slow disk on follower-3; the network looked healthy.",
        ),
        beliefs=Beliefs(
            correctness=0.45,
            uncertainty=0.6,
            handoff_quality=0.4,
            contradiction_risk=0.3,
            evidence_sufficiency=0.35,
        ),
        invoked=["planner", "solver"],
        skipped=["memory"],
        visited=[
            VisitedEdge(
                step=0,
                signature=SIGNATURE,
                action="planner",
                propensity=1.0,
                status=StepStatus.SUCCEEDED,
                tokens=812,
                retries=0,
            ),
            VisitedEdge(
                step=1,
                signature=SIGNATURE,
                action="skip:memory",
                propensity=0.25,
                status=StepStatus.SKIPPED,
                tokens=0,
                retries=0,
            ),
            VisitedEdge(
                step=2,
                signature=SIGNATURE,
                action="solver.evidence_first@openai/gpt-4o-mini",
                propensity=0.6,
                status=StepStatus.FAILED,
                tokens=1_530,
                retries=2,
            ),
        ],
        pending=PendingStep(
            step=3,
            signature=SIGNATURE,
            action="verifier@claude-haiku",
            cell="verifier",
            propensity=0.8,
        ),
        step=3,
        tokens_used=2_342,
        retries=2,
        failures=1,
        done=False,
        halted=False,
        halt_reason=None,
        budget=BUDGET,
        fold_keys={"task_class": "replication"},
    )


def _policy() -> PolicyDocument:
    return PolicyDocument(
        format="agensbus.policy/3",
        tenant="acme",
        version=7,
        created_at=datetime(2026, 5, 1, 11, 0, tzinfo=UTC),
        fold=FoldSpec(version=1, granularity=0.25, extra_keys=["task_class"]),
        selection=SelectionConfig(
            mode="paper",
            confidence_threshold=5,
            c_min=0.5,
            c_initial=1.4,
            c_half_life=50.0,
            failure_lambda=0.5,
        ),
        reward=RewardConfig(
            quality_weight=1.0, cost_weight=0.3, token_cap=8_000, retry_penalty=0.15
        ),
        nodes=[
            NodeRecord(
                signature=SIGNATURE,
                visits=9,
                edges={
                    "solver.concise@gpt-4o": EdgeRecord(
                        visits=6,
                        mean_reward=0.52,
                        reward_m2=0.08,
                        token_mean=1_900.0,
                        token_m2=41_000.0,
                        failures=1,
                    ),
                    "skip:critic": EdgeRecord(visits=2, mean_reward=0.61),
                },
            ),
            NodeRecord(signature="v1|straightforward|1000000|c1.u9.r5.e1|task_class=-", visits=0),
        ],
        classes={
            "replication": ClassRecord(
                baseline=StreamRecord(count=4.0, mean=0.66, m2=0.02),
                deviated=StreamRecord(count=3.0, mean=0.71, m2=0.01),
            )
        },
    )


def _scores() -> list[ActionScore]:
    return [
        ActionScore(
            action="verifier@claude-haiku",
            score=0.93,
            mean=0.55,
            bonus=0.48,
            penalty=0.1,
            visits=4,
            failures=1,
        ),
        ActionScore(
            action="skip:verifier",
            score=None,
            mean=0.0,
            bonus=None,
            penalty=0.0,
            visits=0,
            failures=0,
        ),
    ]


def build_samples() -> dict[str, BaseModel]:
    """A fresh instance of every contract, by name, every field explicitly set."""
    state = _state()
    samples: dict[str, BaseModel] = {
        "TaskSubmitted": TaskSubmitted(
            **ENVELOPE,
            schema_version=1,
            schema_minor=0,
            event_type="TaskSubmitted",
            task_id="incident-0042",
            goal="Find the root cause of the replication lag.",
            features=FEATURES,
            task_class="replication",
            constraints=["cite log lines"],
            rollouts=2,
            budget=BUDGET,
            metadata={"source": "pagerduty", "ticket": "OPS-1187"},
        ),
        "Decision": Decision(
            **ENVELOPE,
            schema_version=1,
            schema_minor=0,
            event_type="Decision",
            decision_id=f"{TRAJECTORY}:3",
            trajectory_id=TRAJECTORY,
            task_id="incident-0042",
            step=3,
            action="verifier@claude-haiku",
            action_kind=ActionKind.INVOKE,
            cell="verifier",
            protocol="default",
            model="claude-haiku",
            reason=DecisionReason.GRAPH_RECOMMENDATION,
            reason_detail="breaker open: claude-opus until 2026-05-27T09:14:30Z",
            signature=SIGNATURE,
            scores=_scores(),
            propensity=0.8,
            policy_version=7,
            exploration_c=1.12,
            state=state,
        ),
        "StepOutcome": StepOutcome(
            **ENVELOPE,
            schema_version=1,
            schema_minor=0,
            event_type="StepOutcome",
            decision_id=f"{TRAJECTORY}:3",
            trajectory_id=TRAJECTORY,
            step=3,
            action="verifier@claude-haiku",
            cell="verifier",
            status=StepStatus.FAILED,
            failure_kind=FailureKind.RATE_LIMITED,
            tokens_in=1_200,
            tokens_out=180,
            latency_s=12.5,
            cost_usd=0.0042,
            retries=3,
            delta=HandoffDelta(
                subproblem="Is follower-3's disk slow?",
                evidence=["iostat: await 900 ms"],
                draft_answer="Yes.",
                critique="Check the other followers too.",
                verification=Verification(verdict=Verdict.SUPPORTED, rationale="iostat"),
                merged_answer="Slow disk on follower-3.",
            ),
            done=True,
            state=state,
        ),
        "TrajectoryCompleted": TrajectoryCompleted(
            **ENVELOPE,
            schema_version=1,
            schema_minor=0,
            event_type="TrajectoryCompleted",
            trajectory_id=TRAJECTORY,
            task_id="incident-0042",
            task_class="replication",
            regime=Regime.EVIDENCE_HEAVY,
            termination=Termination.EVALUATOR_DONE,
            halt_reason=None,
            steps=5,
            tokens=4_100,
            retries=2,
            answer="Slow disk on follower-3.",
            policy_version=7,
            state=state,
        ),
        "RewardObserved": RewardObserved(
            **ENVELOPE,
            schema_version=1,
            schema_minor=0,
            event_type="RewardObserved",
            trajectory_id=TRAJECTORY,
            task_id="incident-0042",
            source=RewardSource.JUDGE,
            quality=0.74,
            confidence=0.9,
            judges=[
                JudgeScore(
                    judge="judge-a",
                    axes={
                        Axis.GOAL_ACHIEVEMENT: 0.8,
                        Axis.GROUNDING: 0.7,
                        Axis.COORDINATION: 0.75,
                        Axis.RECOVERY: 0.6,
                    },
                    overall=0.72,
                )
            ],
            group_id="incident-0042",
        ),
        "PolicySnapshot": PolicySnapshot(
            **ENVELOPE,
            schema_version=1,
            schema_minor=0,
            event_type="PolicySnapshot",
            version=7,
            shard=2,
            shards=4,
            chunk=0,
            chunks=2,
            policy=_policy(),
            input_offsets=[
                TopicOffset(topic="agensbus.trajectories", partition=0, offset=120),
                TopicOffset(topic="agensbus.rewards", partition=2, offset=0),
            ],
            backed_up=118,
            gate=GateFigures(
                acting_version=6,
                trajectories=240,
                estimate=0.61,
                lower_bound=0.58,
                acting_estimate=0.57,
            ),
        ),
        "DeadLetter": DeadLetter(
            **ENVELOPE,
            schema_version=1,
            schema_minor=0,
            event_type="DeadLetter",
            service="router",
            source_topic="agensbus.tasks",
            partition=0,
            offset=1187,
            key_b64="aW5jaWRlbnQtMDA0Mg==",
            payload_b64="eyJ0YXNrX2lkIjogImluY2lkZW50LTAwNDIiLCAiZ29hbCI6IA==",
            payload_bytes=38,
            payload_truncated=False,
            reason="Invalid JSON: EOF while parsing an object at line 1 column 36",
            error_type="ValidationError",
        ),
        "PolicyDocument": _policy(),
    }
    waiting_trajectory = samples["TrajectoryCompleted"]
    waiting_reward = samples["RewardObserved"]
    assert isinstance(waiting_trajectory, TrajectoryCompleted)
    assert isinstance(waiting_reward, RewardObserved)
    samples["PolicySnapshot"] = samples["PolicySnapshot"].model_copy(
        update={
            "checkpoint": LearnerCheckpoint(
                waiting_trajectories=[waiting_trajectory],
                waiting_rewards=[waiting_reward.model_copy(update={"trajectory_id": "other-7"})],
                recent_ids=["incident-0040", "incident-0041"],
                expired=3,
            )
        }
    )
    return samples


def sample_json(name: str) -> dict[str, Any]:
    """The sample as the plain JSON object a non-Python reader would see."""
    return build_samples()[name].model_dump(mode="json")
