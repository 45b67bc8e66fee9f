"""The SDK's registration and its backend: what a cell function sees, what its returns and
failures become, and misuse found before anything is served."""

import asyncio
import logging
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from schemas.events import FailureKind
from schemas.records import TrajectoryState, Verdict
from services.cli.serve_cells import serve_cells
from services.policy import Variant
from services.policy.outcomes import Execution
from services.sdk import CellFailed, CellSet, Result, SdkError, Task, registry
from services.sdk.backend import CellsBackend
from services.sim import load_scenario
from services.worker.backend import Unexecutable
from tests.unit.support_decisions import first_decision

EXAMPLES = Path(__file__).parents[2] / "examples"
SCENARIO = load_scenario(str(EXAMPLES / "support_desk.yaml"))
STATE: TrajectoryState = first_decision(SCENARIO, "t-1", "S1").state
LOG = logging.getLogger("test.sdk")


def execute(cells: CellSet, action: str, state: TrajectoryState = STATE) -> Execution:
    backend = CellsBackend(cells.bind(SCENARIO.pool), LOG)
    return asyncio.run(backend.execute(state, SCENARIO.pool.variant(action)))


def test_a_function_sees_the_goal_handoff_and_variant_and_its_result_becomes_the_step() -> None:
    cells = CellSet()
    seen: list[Task] = []

    @cells.cell("drafter")
    def draft(task: Task) -> Result:
        seen.append(task)
        return Result(draft_answer=f"re: {task.goal}", tokens_in=7, tokens_out=3, cost_usd=0.5)

    execution = execute(cells, "drafter.thorough@small")

    (task,) = seen
    assert (task.goal, task.cell, task.role) == (STATE.handoff.goal, "drafter", "solver")
    assert (task.protocol, task.model, task.attempt) == ("thorough", "small", 1)
    assert (task.task_id, task.task_class) == ("t-1", "S1")
    assert task.features["evidence_availability"] == STATE.features.evidence_availability
    assert execution.result.succeeded
    assert execution.result.delta.draft_answer == f"re: {STATE.handoff.goal}"
    assert (execution.tokens_in, execution.tokens_out, execution.result.tokens) == (7, 3, 10)
    assert (execution.cost_usd, execution.failure_kind, execution.attempts) == (0.5, None, 1)


@pytest.mark.parametrize(
    ("cell", "returned", "field", "expected", "done"),
    [
        ("drafter", "an answer", "draft_answer", "an answer", False),
        ("reviewer", "a critique", "critique", "a critique", False),
        ("triage", "sub-steps", "subproblem", "sub-steps", False),
        ("kb_lookup", "one passage", "evidence", ["one passage"], False),
        ("kb_lookup", ["a", "b"], "evidence", ["a", "b"], False),
        ("signoff", "final words", "merged_answer", "final words", True),
    ],
)
def test_a_plain_return_fills_the_field_of_the_cells_role(
    cell: str, returned: Any, field: str, expected: Any, done: bool
) -> None:
    cells = CellSet()
    cells.cell(cell)(lambda task: returned)

    execution = execute(cells, SCENARIO.pool.cells[cell].variants[0].action)

    assert getattr(execution.result.delta, field) == expected
    assert execution.result.done is done


def test_an_async_class_cell_is_instantiated_once_and_can_give_a_verdict() -> None:
    cells = CellSet()
    made: list[object] = []

    @cells.cell("reviewer")
    class Reviewer:
        def __init__(self) -> None:
            made.append(self)

        async def __call__(self, task: Task) -> Result:
            return Result(critique="fine", verdict="supported", rationale="cites the KB")

    backend = CellsBackend(cells.bind(SCENARIO.pool), LOG)
    variant = SCENARIO.pool.variant("reviewer")
    first = asyncio.run(backend.execute(STATE, variant))
    asyncio.run(backend.execute(STATE, variant))

    assert len(made) == 1
    verification = first.result.delta.verification
    assert verification is not None
    assert (verification.verdict, verification.rationale) == (Verdict.SUPPORTED, "cites the KB")


def test_a_raising_function_is_retried_then_fails_the_step_with_its_kind() -> None:
    cells = CellSet()
    attempts: list[int] = []

    @cells.cell("drafter", retries=2, backoff_s=0)
    def draft(task: Task) -> str:
        attempts.append(task.attempt)
        raise ConnectionError("the model server went away")

    execution = execute(cells, "drafter.terse@small")

    assert attempts == [1, 2, 3]
    assert not execution.result.succeeded
    assert (execution.failure_kind, execution.attempts, execution.result.retries) == (
        FailureKind.NETWORK,
        3,
        2,
    )


def test_a_retry_that_succeeds_counts_the_failed_attempts() -> None:
    cells = CellSet()

    @cells.cell("drafter", retries=3, backoff_s=0)
    def draft(task: Task) -> str:
        if task.attempt < 3:
            raise CellFailed("rate_limited")
        return "third time"

    execution = execute(cells, "drafter.terse@small")

    assert execution.result.succeeded
    assert (execution.attempts, execution.result.retries) == (3, 2)


@pytest.mark.parametrize(
    ("failure", "kind", "attempts"),
    [
        (CellFailed("auth", "bad key"), FailureKind.AUTH, 1),
        (CellFailed("server", retry=False), FailureKind.SERVER, 1),
        (TimeoutError(), FailureKind.TIMEOUT, 2),
        (KeyError("bug"), FailureKind.UPSTREAM, 2),
    ],
)
def test_failures_map_to_kinds_and_final_ones_are_not_retried(
    failure: Exception, kind: FailureKind, attempts: int
) -> None:
    cells = CellSet()

    @cells.cell("drafter", backoff_s=0)
    def draft(task: Task) -> str:
        raise failure

    execution = execute(cells, "drafter.terse@small")

    assert (execution.failure_kind, execution.attempts) == (kind, attempts)


def test_a_function_slower_than_its_timeout_fails_with_kind_timeout() -> None:
    cells = CellSet()

    @cells.cell("drafter", retries=0, timeout_s=0.05)
    async def draft(task: Task) -> str:
        await asyncio.sleep(30)
        return "never"

    assert execute(cells, "drafter.terse@small").failure_kind is FailureKind.TIMEOUT


@pytest.mark.parametrize(
    "returned",
    [None, 42, Result(verdict="maybe"), Result(tokens_in=-1), Result(evidence=["x"] * 65)],
)
def test_a_return_no_handoff_holds_fails_the_step_with_kind_schema(returned: Any) -> None:
    cells = CellSet()
    cells.cell("drafter")(lambda task: returned)

    execution = execute(cells, "drafter.terse@small")

    assert not execution.result.succeeded
    assert (execution.failure_kind, execution.attempts) == (FailureKind.SCHEMA, 1)


def test_a_verifier_style_string_is_refused_for_a_role_that_needs_a_verdict() -> None:
    pool = load_scenario("security-advisories").pool
    cells = CellSet()
    cells.cell("verifier")(lambda task: "looks right")
    state = first_decision(load_scenario("security-advisories"), "t-2", "C1").state
    backend = CellsBackend(cells.bind(pool), LOG)

    execution = asyncio.run(backend.execute(state, pool.variant("verifier@balanced")))

    assert execution.failure_kind is FailureKind.SCHEMA


def test_the_most_specific_registration_serves_a_variant_and_others_are_unexecutable() -> None:
    cells = CellSet()
    cells.cell("drafter")(lambda task: "any")
    cells.cell("drafter", protocol="thorough")(lambda task: "thorough")
    cells.cell("drafter", model="large")(lambda task: "large")

    def draft_of(action: str) -> str | None:
        return execute(cells, action).result.delta.draft_answer

    assert draft_of("drafter.terse@small") == "any"
    assert draft_of("drafter.thorough@small") == "thorough"
    assert draft_of("drafter.terse@large") == "large"

    only_reviewer = CellSet()
    only_reviewer.cell("reviewer")(lambda task: "ok")
    backend = CellsBackend(only_reviewer.bind(SCENARIO.pool), LOG)
    with pytest.raises(Unexecutable):
        asyncio.run(backend.execute(STATE, Variant("drafter", "terse", "small")))


def test_misuse_is_refused_when_registered_or_bound() -> None:
    cells = CellSet()

    with pytest.raises(SdkError, match="decorates a function or a class"):
        cells.cell("drafter")("not callable")

    class NoCall:
        pass

    with pytest.raises(SdkError, match="has no __call__"):
        cells.cell("drafter")(NoCall)

    def returns_int(task: Task) -> int:
        return 1

    with pytest.raises(SdkError, match="annotated to return"):
        cells.cell("drafter")(returns_int)

    def one(task: Task) -> str | Result:
        return "x"

    cells.cell("drafter")(one)
    with pytest.raises(SdkError, match="served twice"):
        cells.cell("drafter")(one)
    with pytest.raises(SdkError, match="retries"):
        cells.cell("drafter", retries=-1)

    unknown = CellSet()
    unknown.cell("solver")(one)
    with pytest.raises(SdkError, match=r"'solver'.*not in the pipeline; its cells are drafter"):
        unknown.bind(SCENARIO.pool)

    no_variant = CellSet()
    no_variant.cell("drafter", protocol="rhyming")(one)
    with pytest.raises(SdkError, match=r"no variant 'drafter\.rhyming'"):
        no_variant.bind(SCENARIO.pool)

    with pytest.raises(SdkError, match="no cell functions"):
        CellSet().bind(SCENARIO.pool)


@pytest.mark.parametrize(
    ("module", "message"),
    [
        ("duplicate.py", "is served twice"),
        ("unknown.py", "'planner'"),
        ("no_such_module_here", "cannot import no_such_module_here"),
        ("broken.py", "importing broken.py failed: ZeroDivisionError"),
        ("not_a_set.py:cells", "is a str, not a services.sdk.CellSet"),
    ],
)
def test_serve_cells_ends_misuse_with_one_line_and_exit_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, module: str, message: str
) -> None:
    (tmp_path / "duplicate.py").write_text(
        "from services.sdk import CellSet\ncells = CellSet()\n"
        "f = lambda task: 'x'\ncells.cell('drafter')(f)\ncells.cell('drafter')(f)\n"
    )
    (tmp_path / "unknown.py").write_text(
        "from services.sdk import cell\ncell('planner')(lambda task: 'x')\n"
    )
    (tmp_path / "not_a_set.py").write_text("cells = 'not a set'\n")
    (tmp_path / "broken.py").write_text("1 / 0\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(registry, "DEFAULT_CELLS", CellSet())

    result = CliRunner().invoke(
        serve_cells,
        [module],
        env={
            "AGENSBUS_KAFKA_BOOTSTRAP": "127.0.0.1:1",
            "AGENSBUS_PIPELINE": str(EXAMPLES / "support_desk_pipeline.yaml"),
        },
    )

    assert result.exit_code == 2, result.output
    assert message in result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1
    assert "Traceback" not in result.output
