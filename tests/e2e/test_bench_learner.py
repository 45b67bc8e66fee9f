"""``agensbus bench learner`` drains a backlog on a real broker with one learner, then with
two sharded replicas, and prints their rates. Speed is never asserted: only that the whole
backlog was backed up and measured."""

import json

from tests.e2e.conftest import Agensbus


def test_bench_learner_backs_up_the_whole_backlog(agensbus: Agensbus) -> None:
    done = agensbus("bench", "learner", "--trajectories", "30", "--timeout", "120", "--json")

    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert (result["trajectories"], result["timed_out"]) == (30, False)
    for run, replicas in (("one", 1), ("sharded", 2)):
        assert (result[run]["replicas"], result[run]["backed_up"]) == (replicas, 30)
        assert result[run]["seconds"] > 0 and result[run]["per_s"] > 0
    assert result["ratio"] > 0
