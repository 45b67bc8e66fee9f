"""Which cells a worker serves: worker_cells and worker_cells_except."""

import pytest
from click.testing import CliRunner

from services.cli.serve import worker
from services.sim import load_scenario
from services.worker.cells import CellsError, ServedCells

POOL = load_scenario("security-advisories").pool


def test_empty_serves_every_cell_and_the_exception_wins_over_the_list() -> None:
    every = ServedCells.of("", "", POOL)
    assert all(every.serves(cell) for cell in POOL.cells)

    but = ServedCells.of("", "solver, verifier", POOL)
    assert {c for c in POOL.cells if not but.serves(c)} == {"solver", "verifier"}

    only = ServedCells.of("solver,planner", "planner", POOL)
    assert {c for c in POOL.cells if only.serves(c)} == {"solver"}


@pytest.mark.parametrize(
    ("only", "leave_out", "message"),
    [
        ("solver,sovler", "", "worker cells name sovler, which the pool does not have"),
        ("", "critic", "worker cells name critic"),
        ("solver", "solver", "nothing to serve"),
    ],
)
def test_cells_the_pool_does_not_have_or_nothing_to_serve_are_refused(
    only: str, leave_out: str, message: str
) -> None:
    with pytest.raises(CellsError, match=message):
        ServedCells.of(only, leave_out, POOL)


def test_the_worker_command_ends_a_bad_cell_list_with_one_line_and_exit_2() -> None:
    result = CliRunner().invoke(
        worker,
        ["--worker-cells-except", "solver,nope"],
        env={"AGENSBUS_KAFKA_BOOTSTRAP": "127.0.0.1:1"},
    )

    assert result.exit_code == 2, result.output
    assert [line for line in result.output.splitlines() if line.strip()] == [
        "Error: worker cells name nope, which the pool does not have (its cells: evaluator, "
        "memory, planner, solver, verifier, web_search_primary, web_search_secondary)"
    ]
