"""``agensbus simulate`` through click's runner."""

import json
from pathlib import Path

from click.testing import CliRunner

from services.cli.simulate import simulate
from services.runtime.policy_files import load_graph


def invoke(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(simulate, list(args))
    return result.exit_code, result.stdout, result.stderr


def test_table_output() -> None:
    code, out, err = invoke(
        "--scenario", "security-advisories", "--epochs", "2", "--policy", "fixed"
    )
    assert code == 0, err
    assert "security-advisories: policy fixed, seed 0" in out
    assert "true quality" in out and "regret" in out
    assert "C8" in out
    assert "simulated 120 trajectories" in err


def test_json_output_is_clean_and_complete() -> None:
    code, out, _ = invoke("--epochs", "2", "--policy", "fixed", "--seed", "1", "--json")
    assert code == 0
    data = json.loads(out)
    assert (data["scenario"], data["policy"], data["seed"]) == ("security-advisories", "fixed", 1)
    assert [e["epoch"] for e in data["epochs"]] == [1, 2]
    epoch = data["epochs"][0]
    for key in ("true_quality", "judge_score", "tokens_per_trajectory", "skip_share", "regret"):
        assert isinstance(epoch[key], float)
    assert epoch["skip_share"] == 0.0
    assert set(epoch["per_class"]) == {f"C{i}" for i in range(1, 9)}
    assert data["oracle"]["C1"]["actions"]


def test_json_is_deterministic_per_seed() -> None:
    args = ("--scenario", "distributed-systems", "--epochs", "1", "--json")
    assert invoke(*args)[1] == invoke(*args)[1]
    assert invoke(*args)[1] != invoke(*args, "--seed", "9")[1]


def test_unknown_scenario_is_a_user_error() -> None:
    code, out, err = invoke("--scenario", "nonsense")
    assert code == 2
    assert "unknown scenario 'nonsense'" in err
    assert "Traceback" not in out + err


def test_invalid_scenario_file_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text("name: broken\nclasses: 3\n", encoding="utf-8")
    code, _, err = invoke("--scenario", str(path))
    assert code == 2
    assert f"{path}: classes: " in err
    assert "Traceback" not in err


def test_bad_flag_value_exits_with_two() -> None:
    code, _, err = invoke("--policy", "greedy")
    assert code == 2
    assert "greedy" in err
    assert "Traceback" not in err


def test_any_deployable_arm_runs_and_a_warm_one_is_refused() -> None:
    code, out, err = invoke("--epochs", "1", "--policy", "agensbus+linear_cost", "--json")
    assert code == 0, err
    assert json.loads(out)["policy"] == "agensbus+linear_cost"
    code, _, err = invoke("--epochs", "1", "--policy", "agensbus-warm")
    assert code == 2
    assert "starts warm" in err


def test_save_then_load_policy(tmp_path: Path) -> None:
    path = tmp_path / "learned.json"
    code, _, err = invoke("--epochs", "1", "--save-policy", str(path), "--json")
    assert code == 0, err
    document, graph = load_graph(path)
    assert document.version == 1
    first_visits = graph.total_node_visits
    assert first_visits > 0
    code, _, err = invoke("--epochs", "1", "--load-policy", str(path), "--save-policy", str(path))
    assert code == 0, err
    document, graph = load_graph(path)
    assert document.version == 2
    assert graph.total_node_visits > first_visits


def test_unreadable_policy_file_is_a_user_error(tmp_path: Path) -> None:
    path = tmp_path / "policy.json"
    path.write_text("{}", encoding="utf-8")
    code, out, err = invoke("--load-policy", str(path))
    assert code == 2
    assert "not an agensbus.policy/3 document" in err
    assert "Traceback" not in out + err


def _class_table_header(out: str) -> str:
    lines = out.splitlines()
    start = next(i for i, line in enumerate(lines) if "true quality per class" in line)
    return next(line for line in lines[start + 1 :] if "class" in line and "regime" in line)


def test_the_class_table_compares_the_first_epoch_with_the_last() -> None:
    code, out, err = invoke("--epochs", "3", "--policy", "fixed")
    assert code == 0, err
    header = _class_table_header(out)
    assert "epoch 1" in header and "epoch 3" in header and "epoch 2" not in header


def test_one_epoch_gets_one_column() -> None:
    code, out, err = invoke("--epochs", "1", "--policy", "fixed")
    assert code == 0, err
    assert _class_table_header(out).count("epoch 1") == 1
