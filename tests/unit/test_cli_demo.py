"""``agensbus demo --backend openai`` before anything starts: a configuration that cannot
reach a model is a one-line usage error; what the services get in their environment; the
report of a run on real models, which has no ground truth."""

from pathlib import Path

import pytest
from click.testing import CliRunner
from pydantic import SecretStr

from schemas.records import StepStatus
from services.cli import cli
from services.cli._errors import UserError
from services.cli.demo import openai_preflight, parse_arms
from services.demo.live import LiveEpoch, live_trajectory
from services.demo.replay import Observed
from services.demo.run import DemoConfig, backend_env, new_run_id, tasks_per_epoch
from services.policy.arms import policy_setup
from services.runtime.settings import Settings
from services.sim.corpus import corpus_for
from services.sim.engine import Engine, EpochReport, TrajectoryRecord
from services.sim.loader import load_scenario

OPENAI_VARIABLES = (
    "AGENSBUS_OPENAI_BASE_URL",
    "AGENSBUS_OPENAI_API_KEY",
    "AGENSBUS_OPENAI_MODELS_FILE",
    "AGENSBUS_OPENAI_DEFAULT_MODEL",
    "AGENSBUS_KAFKA_BOOTSTRAP",
)


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in OPENAI_VARIABLES:
        monkeypatch.delenv(name, raising=False)


def demo(*args: str, **env: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, ["demo", "--backend", "openai", *args], env=env)
    return result.exit_code, result.output


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, "--backend openai needs an endpoint: set AGENSBUS_OPENAI_BASE_URL"),
        (
            {"AGENSBUS_OPENAI_BASE_URL": "http://127.0.0.1:9/v1"},
            "some variants name no model; set default_model",
        ),
        (
            {
                "AGENSBUS_OPENAI_BASE_URL": "http://127.0.0.1:9/v1",
                "AGENSBUS_OPENAI_DEFAULT_MODEL": "tiny",
            },
            "--backend openai: no API key in AGENSBUS_OPENAI_API_KEY",
        ),
    ],
)
def test_a_run_that_cannot_reach_a_model_is_refused_in_one_line(
    env: dict[str, str], expected: str
) -> None:
    code, output = demo(**env)
    assert code == 2
    [line] = output.strip().splitlines()
    assert expected in line


def test_a_model_table_naming_a_missing_key_variable_is_refused(tmp_path: Path) -> None:
    table = tmp_path / "models.yaml"
    table.write_text(
        "default_model: balanced\ndefaults:\n  base_url: http://127.0.0.1:9/v1\n"
        "  api_key_env: AGENSBUS_TEST_UNSET_KEY\nmodels:\n  balanced: {model: m}\n"
    )
    code, output = demo(AGENSBUS_OPENAI_MODELS_FILE=str(table))
    assert code == 2 and "no API key in env AGENSBUS_TEST_UNSET_KEY" in output


def test_a_broken_model_table_is_refused_in_one_line(tmp_path: Path) -> None:
    table = tmp_path / "models.yaml"
    table.write_text("models:\n  balanced: {price_in_per_1k: -1}\n")
    code, output = demo(AGENSBUS_OPENAI_MODELS_FILE=str(table))
    assert code == 2
    [line] = output.strip().splitlines()
    assert str(table) in line


def test_model_slots_no_table_maps_are_a_warning(tmp_path: Path) -> None:
    scenario = load_scenario("security-advisories")
    shortcut = Settings(
        openai_base_url="http://127.0.0.1:9/v1",
        openai_api_key=SecretStr("k"),
        openai_default_model="tiny",
    )
    [warning] = openai_preflight(shortcut, scenario)
    assert "balanced, fast, strong" in warning
    table = tmp_path / "models.yaml"
    table.write_text(
        "default_model: balanced\nmodels:\n"
        + "".join(f"  {slot}: {{model: m}}\n" for slot in ("balanced", "fast", "strong"))
    )
    mapped = shortcut.model_copy(update={"openai_models_file": table})
    assert openai_preflight(mapped, scenario) == []


def test_the_services_get_the_backend_the_endpoint_and_the_documents() -> None:
    scenario = load_scenario("security-advisories")
    corpus = corpus_for(scenario)
    assert corpus is not None
    settings = Settings(
        kafka_bootstrap="127.0.0.1:9092",
        openai_base_url="http://127.0.0.1:9/v1",
        openai_api_key=SecretStr("secret-key"),
    )
    live = DemoConfig(
        scenario=scenario.name, out=Path("o"), settings=settings, backend="openai", corpus=corpus
    )
    env = backend_env(live)
    assert env["AGENSBUS_WORKER_BACKEND"] == "openai"
    assert env["AGENSBUS_OPENAI_BASE_URL"] == "http://127.0.0.1:9/v1"
    assert env["AGENSBUS_OPENAI_API_KEY"] == "secret-key"
    assert env["AGENSBUS_DOCUMENTS_DIR"] == str(corpus.documents_dir)
    assert not any(name.startswith("AGENSBUS_KAFKA") for name in env)
    # A simulated demo says so explicitly, whatever the caller's environment holds, and
    # hands no endpoint or key to the services.
    simulated = backend_env(DemoConfig(scenario=scenario.name, out=Path("o"), settings=settings))
    assert simulated == {"AGENSBUS_WORKER_BACKEND": "simulated"}


def test_tasks_per_class_keeps_every_class() -> None:
    scenario = load_scenario("security-advisories")
    assert tasks_per_epoch(scenario, None) == scenario.tasks_per_epoch == 60
    assert tasks_per_epoch(scenario, 1) == len(scenario.classes)
    assert tasks_per_epoch(scenario, 7) == sum(min(7, c.count) for c in scenario.classes.values())


def test_a_live_epoch_agrees_with_the_engines_report_where_both_are_defined() -> None:
    scenario = load_scenario("security-advisories")
    records: list[TrajectoryRecord] = []
    Engine(scenario, policy_setup(scenario, "paper"), seed=0).run(2, on_trajectory=records.append)
    second = [r for r in records if r.epoch == 2]
    live = [
        live_trajectory(2, r.completed(), r.judgement.to_event(task_id=r.state.task_id), 0.01)
        for r in second
    ]
    epoch, report = LiveEpoch.of(2, live), EpochReport.of(2, second)
    assert epoch.trajectories == report.trajectories == len(second)
    assert epoch.judge_score == pytest.approx(report.judge_score)
    assert epoch.judge_confidence == pytest.approx(report.judge_confidence)
    assert epoch.reward == pytest.approx(report.reward)
    assert epoch.tokens_per_trajectory == pytest.approx(report.tokens_per_trajectory)
    assert epoch.skip_share == pytest.approx(report.skip_share)
    assert epoch.skip_share > 0  # the paper arm skips by epoch 2: the count is exercised
    assert epoch.cost_per_trajectory_usd == pytest.approx(0.01)
    ended = [r.termination.value for r in second]
    assert epoch.terminations == {name: ended.count(name) for name in sorted(set(ended))}
    assert [t.question for t in live] == [r.state.handoff.goal for r in second]


def test_a_live_task_waits_for_the_outcome_of_every_step_it_invoked() -> None:
    scenario = load_scenario("security-advisories")
    records: list[TrajectoryRecord] = []
    Engine(scenario, policy_setup(scenario, "paper"), seed=0).run(2, on_trajectory=records.append)
    record = next(r for r in records if r.skips and r.decisions - r.skips >= 2)
    state = record.state
    observed = Observed()
    assert not observed.outcomes_seen(state.trajectory_id)  # not even completed
    observed.completed[state.trajectory_id] = record.completed()
    invoked = [e.step for e in state.visited if e.status is not StepStatus.SKIPPED]
    for step in invoked[:-1]:
        observed.step_costs.setdefault(state.trajectory_id, {})[step] = 0.25
    assert not observed.outcomes_seen(state.trajectory_id)
    # The last one arrives (twice: at-least-once delivery); skipped steps have none.
    for _ in range(2):
        observed.step_costs[state.trajectory_id][invoked[-1]] = 0.25
    assert observed.outcomes_seen(state.trajectory_id)
    assert observed.cost_usd(state.trajectory_id) == pytest.approx(0.25 * len(invoked))


def test_a_scenario_outgrowing_its_corpus_is_refused_only_for_real_models(
    tmp_path: Path,
) -> None:
    shipped = Path(__file__).parents[2] / "services" / "sim" / "scenarios"
    text = (shipped / "security-advisories.yaml").read_text()
    bigger = tmp_path / "bigger.yaml"
    bigger.write_text(text.replace("count: 8", "count: 9", 1))
    code, output = demo("--scenario", str(bigger), AGENSBUS_OPENAI_BASE_URL="http://127.0.0.1:9/v1")
    assert code == 2
    assert "classes.C1: 8 questions for the class's 9 tasks" in output
    # The simulated world never reads a question: a warning, and the demo goes on (here to
    # the next check, which stops it before anything starts).
    simulated = CliRunner().invoke(cli, ["demo", "--scenario", str(bigger), "--arms", "nope"])
    assert simulated.exit_code == 2 and "--arms: unknown arm 'nope'" in simulated.output
    assert "warning:" in simulated.output and "tasks ask their class description" in (
        simulated.output
    )


def test_every_arm_gets_a_topic_prefix_a_service_accepts() -> None:
    # The through-Kafka benchmark adds the seed to the run id, the longest id it makes.
    config = DemoConfig(scenario="security-advisories", out=Path("o"), run_id=new_run_id() + "-s9")
    long_arms = [
        "agensbus+greedy_continuation+expected_retries+expected_tokens",
        "agensbus+greedy_continuation+expected_retries+expected_tokens+linear_cost_16k",
    ]
    prefixes = [config.prefix(arm) for arm in ["paper", "agensbus+class_fold", *long_arms]]
    for prefix in prefixes:
        assert Settings(topic_prefix=prefix).topic_prefix == prefix
    assert prefixes[:2] == [
        f"agensbus.demo.{config.run_id}.paper.",
        f"agensbus.demo.{config.run_id}.agensbus_class_fold.",
    ]
    assert len(set(prefixes)) == len(prefixes)


def test_the_demo_runs_any_arm_a_deployment_can_run() -> None:
    assert parse_arms("agensbus, paper+class_fold,fixed") == (
        "agensbus",
        "paper+class_fold",
        "fixed",
    )
    for text, problem in [
        ("paper,clever", "unknown arm 'clever'"),
        ("warm", "starts warm"),
        ("paper,paper", "names an arm twice"),
        (" , ", "names no arm"),
    ]:
        with pytest.raises(UserError, match=problem):
            parse_arms(text)
