"""``agensbus policy evaluate`` on events the real router core logged while routing the
simulated world with a stochastic arm, written as ``agensbus tail --json`` writes them."""

import json
import statistics
from functools import cache
from pathlib import Path

import pytest
from click.testing import CliRunner

from schemas.events import Decision, PolicySnapshot, StepOutcome, TaskSubmitted
from schemas.records import FoldSpec, SelectionConfig
from services.cli import cli
from services.policy import PolicyGraph, hybrid_reward
from services.policy.arms import arm_named
from services.router.core import RouterCore
from services.sim import Engine, SimulatedJudge, World, load_scenario
from services.sim.engine import epoch_tasks
from services.worker.invoke import outcome_of

SCENARIO = load_scenario("security-advisories")
LOGGER = arm_named("agensbus-free+softmax")  # its scores alone: a class floor is read open
SEED = 4


@cache
def trained() -> PolicyGraph:
    engine = Engine(SCENARIO, LOGGER.setup(SCENARIO, SEED), seed=SEED, reward=LOGGER.reward)
    engine.run(3)
    return engine.graph


def policy_file(
    path: Path,
    selection: SelectionConfig,
    graph: PolicyGraph | None = None,
    fold: FoldSpec | None = None,
) -> Path:
    """The trained graph (or ``graph``) as a policy file that selects with ``selection``."""
    learned = trained() if graph is None else graph
    document = learned.to_document(version=1, fold=fold)
    path.write_text(document.model_copy(update={"selection": selection}).model_dump_json())
    return path


@cache
def logged_lines() -> tuple[str, ...]:
    """One epoch of tasks routed by a router serving the trained graph with the softmax
    arm: its decisions and trajectories, and the simulated judge's rewards, as JSON lines."""
    router = RouterCore(LOGGER.setup(SCENARIO, SEED), ("default",))
    document = trained().to_document(version=1)
    assert router.on_snapshot(PolicySnapshot(version=1, policy=document)).adopted
    world, judge = World(SCENARIO, SEED), SimulatedJudge(SCENARIO.judges, SEED)
    lines = []
    for task_id, task_class in epoch_tasks(SCENARIO, SEED, 20):
        submitted = TaskSubmitted(
            task_id=task_id,
            goal=task_class.description,
            features=task_class.features,
            task_class=task_class.name,
        )
        pending = router.on_task(submitted)
        while pending:
            assert isinstance(pending, list), pending
            lines += [event.model_dump_json() for event in pending]
            invoke = next((e for e in pending if isinstance(e, Decision) and e.state.pending), None)
            if invoke is None:
                final = pending[-1]
                quality = world.true_quality(final.state)  # type: ignore[union-attr]
                lines.append(
                    judge.score(task_id, quality).to_event(task_id=task_id).model_dump_json()
                )
                break
            executed = world.execute(invoke.state, SCENARIO.pool.variant(invoke.action))
            outcome: StepOutcome = outcome_of(invoke, executed)
            pending = router.on_outcome(outcome)
    return tuple(lines)


def events_file(tmp_path: Path, extra: list[str] | None = None) -> Path:
    path = tmp_path / "events.jsonl"
    path.write_text("\n".join([*logged_lines(), *(extra or [])]) + "\n")
    return path


def evaluated(*args: str) -> dict[str, object]:
    result = CliRunner().invoke(cli, ["policy", "evaluate", *args, "--json"])
    assert result.exit_code == 0, result.output
    data: dict[str, object] = json.loads(result.output)
    return data


def test_the_logging_policy_is_estimated_at_exactly_what_it_earned(tmp_path: Path) -> None:
    logger = policy_file(tmp_path / "logger.json", LOGGER.selection)
    data = evaluated(str(logger), str(events_file(tmp_path)))
    trajectories = [json.loads(line) for line in logged_lines()]
    ends = {t["trajectory_id"]: t for t in trajectories if t["event_type"] == "TrajectoryCompleted"}
    rewards = [
        hybrid_reward(
            r["quality"], ends[r["trajectory_id"]]["tokens"], ends[r["trajectory_id"]]["retries"]
        )
        for r in trajectories
        if r["event_type"] == "RewardObserved"
    ]
    assert data["trajectories"] == data["matched"] == len(ends) == SCENARIO.tasks_per_epoch
    estimates = data["estimates"]
    assert isinstance(estimates, dict)
    assert estimates["logged_policy"]["estimate"] == pytest.approx(statistics.mean(rewards))
    assert estimates["IPS"]["estimate"] == pytest.approx(statistics.mean(rewards))
    assert estimates["SNIPS"]["estimate"] == pytest.approx(statistics.mean(rewards))


def test_a_greedy_target_matches_only_the_trajectories_it_could_produce(tmp_path: Path) -> None:
    greedy = policy_file(
        tmp_path / "greedy.json", LOGGER.selection.model_copy(update={"temperature": 0.0})
    )
    data = evaluated(str(greedy), str(events_file(tmp_path)))
    assert 0 < data["matched"] < data["trajectories"]  # type: ignore[operator]


def test_other_events_are_passed_over_and_bad_lines_named(tmp_path: Path) -> None:
    logger = policy_file(tmp_path / "logger.json", LOGGER.selection)
    task = TaskSubmitted(task_id="x", goal="g").model_dump_json()
    data = evaluated(str(logger), str(events_file(tmp_path, [task])))
    assert data["other_events"] == 1

    bad = events_file(tmp_path, ["{not json", '{"event_type": "Decision"}', "[1]"])
    result = CliRunner().invoke(cli, ["policy", "evaluate", str(logger), str(bad)])
    assert result.exit_code == 2
    count = len(logged_lines())
    assert f"line {count + 1}: not JSON" in result.output
    assert f"line {count + 2}: not a valid Decision" in result.output
    assert f"line {count + 3}: not an agensbus event" in result.output
    assert "Traceback" not in result.output


def test_events_must_come_from_somewhere(tmp_path: Path) -> None:
    logger = policy_file(tmp_path / "logger.json", LOGGER.selection)
    result = CliRunner().invoke(cli, ["policy", "evaluate", str(logger)])
    assert result.exit_code == 2 and "give EVENTS.jsonl files, or --from-kafka" in result.output


def test_a_log_without_whole_trajectories_or_of_another_fold_is_refused(tmp_path: Path) -> None:
    logger = policy_file(tmp_path / "logger.json", LOGGER.selection)
    decisions_only = tmp_path / "decisions.jsonl"
    decisions_only.write_text(
        "\n".join(line for line in logged_lines() if '"event_type":"Decision"' in line)
    )
    result = CliRunner().invoke(cli, ["policy", "evaluate", str(logger), str(decisions_only)])
    assert result.exit_code == 2 and "no whole trajectory of tenant 'default'" in result.output

    garbled = tmp_path / "garbled.jsonl"
    lines = list(logged_lines())
    first = next(i for i, line in enumerate(lines) if '"event_type":"Decision"' in line)
    decision = json.loads(lines[first])
    lines[first] = json.dumps({**decision, "signature": "not a signature"})
    garbled.write_text("\n".join(lines) + "\n")
    result = CliRunner().invoke(cli, ["policy", "evaluate", str(logger), str(garbled)])
    assert result.exit_code == 2 and "not a signature" in result.output
    assert "Traceback" not in result.output

    keyed_fold = FoldSpec(extra_keys=["task_class"])
    keyed = policy_file(tmp_path / "keyed.json", LOGGER.selection, PolicyGraph(), keyed_fold)
    events = str(events_file(tmp_path))
    result = CliRunner().invoke(cli, ["policy", "evaluate", str(keyed), events])
    assert result.exit_code == 2 and "folds states differently" in result.output


def test_the_table_names_every_estimator(tmp_path: Path) -> None:
    logger = policy_file(tmp_path / "logger.json", LOGGER.selection)
    result = CliRunner().invoke(
        cli, ["policy", "evaluate", str(logger), str(events_file(tmp_path))]
    )
    assert result.exit_code == 0, result.output
    for name in ("logged policy", "IPS", "SNIPS", "doubly robust", "effective sample size"):
        assert name in result.output
