"""``agensbus bench learner`` drains a backlog on a real broker and prints its rate. Speed is
never asserted: only that the whole backlog was backed up and measured."""

import json

from tests.e2e.conftest import Agensbus


def test_bench_learner_backs_up_the_whole_backlog(agensbus: Agensbus) -> None:
    done = agensbus("bench", "learner", "--trajectories", "30", "--timeout", "120", "--json")

    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert (result["trajectories"], result["backed_up"], result["timed_out"]) == (30, 30, False)
    assert result["seconds"] > 0 and result["per_s"] > 0
