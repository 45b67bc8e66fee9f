"""Policy files: a saved policy loads back unchanged; every broken file is rejected with a
message that names it; the example in docs/policy-format.md is a valid file."""

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from schemas.policy_file import PolicyDocument
from schemas.records import FoldSpec, SelectionConfig
from services.policy import PolicyGraph
from services.runtime.policy_files import PolicyFileError, load_graph, save_policy
from tests.unit.support_policy_doc import doc_example

S1 = "v1|straightforward|1000000|c1.u9.r5.e1|task_class=C1"
S2 = "v1|ambiguous|1100000|c1.u8.r5.e1|task_class=-"


def _learned_graph() -> PolicyGraph:
    graph = PolicyGraph()
    edges = [
        (S1, "planner", False),
        (S1, "planner", False),
        (S1, "planner", True),
        (S1, "skip:planner", False),
        (S2, "solver.concise@fast", False),
        (S2, "verifier@balanced", True),
    ]
    graph.backup(graph.batch(edges, [0.5, 0.9, 0.0, 0.4, 0.7, 0.0], [800, 1200, 0, 0, 2000, 0]))
    return graph


def test_save_then_load_round_trips_document_and_statistics(tmp_path: Path) -> None:
    graph = _learned_graph()
    document = graph.to_document(
        tenant="acme",
        version=7,
        fold=FoldSpec(extra_keys=["task_class"]),
        selection=SelectionConfig(confidence_threshold=3, c_initial=2.0),
    )
    path = tmp_path / "sub" / "policy.json"
    save_policy(path, document)

    loaded, loaded_graph = load_graph(path)

    assert loaded == document
    assert [p.name for p in path.parent.iterdir()] == ["policy.json"]  # no temp file left
    assert loaded_graph.signatures == graph.signatures
    for signature in graph.signatures:
        assert loaded_graph.visits_of(signature) == graph.visits_of(signature)
        assert loaded_graph.edges_of(signature) == graph.edges_of(signature)
    planner = loaded_graph.edge(S1, "planner")
    assert (planner.visits, planner.failures) == (2, 1)
    assert planner.mean_reward == pytest.approx(0.7, abs=1e-12)
    assert planner.reward_m2 == pytest.approx(0.08, abs=1e-12)  # (0.5-0.7)^2 + (0.9-0.7)^2
    assert loaded_graph.visits_of(S1) == 4


def _valid() -> dict[str, Any]:
    return {
        "format": "agensbus.policy/1",
        "fold": {"extra_keys": ["task_class"]},
        "nodes": [
            {"signature": S1, "visits": 3, "edges": {"planner": {"visits": 2, "failures": 1}}},
            {"signature": S2, "visits": 0, "edges": {}},
        ],
    }


def _edit(change: Callable[[dict[str, Any]], None]) -> str:
    data = _valid()
    change(data)
    return json.dumps(data)


def _set_node(field: str, value: object) -> Callable[[dict[str, Any]], None]:
    return lambda d: d["nodes"][0].__setitem__(field, value)


def _set_edge(field: str, value: object) -> Callable[[dict[str, Any]], None]:
    return lambda d: d["nodes"][0]["edges"]["planner"].__setitem__(field, value)


BROKEN = {
    "not json": ("{nope", "is not JSON"),
    "not an object": ("[1, 2]", "is not an agensbus.policy/3 document"),
    "wrong format": (
        _edit(lambda d: d.__setitem__("format", "agensbus.policy/4")),
        "is not an agensbus.policy/3 document, nor an earlier one it reads "
        "(agensbus.policy/1, agensbus.policy/2) (format: 'agensbus.policy/4')",
    ),
    "no format": (_edit(lambda d: d.pop("format")), "(format: None)"),
    "bad signature": (_edit(_set_node("signature", "v1|straightforward|10")), "not a signature"),
    "unknown regime": (
        _edit(_set_node("signature", "v1|sideways|1000000|c1.u9.r5.e1|task_class=C1")),
        "unknown regime 'sideways'",
    ),
    "duplicate signatures": (
        _edit(lambda d: d["nodes"][1].__setitem__("signature", S1)),
        "appears twice",
    ),
    "negative node visits": (
        _edit(_set_node("visits", -1)),
        "nodes.0.visits: Input should be greater than or equal to 0",
    ),
    "negative edge visits": (
        _edit(_set_edge("visits", -2)),
        "nodes.0.edges.planner.visits: Input should be greater than or equal to 0",
    ),
    "negative failures": (
        _edit(_set_edge("failures", -1)),
        "nodes.0.edges.planner.failures: Input should be greater than or equal to 0",
    ),
    "negative m2": (
        _edit(_set_edge("reward_m2", -0.5)),
        "nodes.0.edges.planner.reward_m2: Input should be greater than or equal to 0",
    ),
    "bad action id": (
        _edit(lambda d: d["nodes"][0]["edges"].__setitem__("solver..x", {"visits": 1})),
        "nodes.0.edges.solver..x",
    ),
    "unknown field": (_edit(lambda d: d.__setitem__("colour", "red")), "colour"),
    "fold keys mismatch": (
        _edit(lambda d: d["fold"].__setitem__("extra_keys", [])),
        "carries keys ['task_class']",
    ),
    "bad granularity": (
        _edit(lambda d: d["fold"].__setitem__("granularity", 0.3)),
        "must divide 1 evenly",
    ),
}


@pytest.mark.parametrize(("text", "message"), BROKEN.values(), ids=BROKEN.keys())
def test_a_broken_file_is_rejected_with_a_message_naming_it(
    tmp_path: Path, text: str, message: str
) -> None:
    path = tmp_path / "broken.json"
    path.write_text(text)
    with pytest.raises(PolicyFileError) as caught:
        load_graph(path)
    assert str(path) in str(caught.value)
    assert message in str(caught.value)


def test_a_missing_file_is_named(tmp_path: Path) -> None:
    path = tmp_path / "absent.json"
    with pytest.raises(PolicyFileError, match=re.escape(f"cannot read policy file {path}")):
        load_graph(path)


def test_the_valid_base_document_loads(tmp_path: Path) -> None:
    # The rejections above each change one thing of this document; it must itself be fine.
    path = tmp_path / "valid.json"
    path.write_text(json.dumps(_valid()))
    document, graph = load_graph(path)
    assert graph.node_count == 2
    assert graph.edge(S1, "planner").failures == 1
    assert document.fold.extra_keys == ["task_class"]


def test_the_documented_example_loads(tmp_path: Path) -> None:
    path = tmp_path / "example.json"
    path.write_text(doc_example())
    document, graph = load_graph(path)
    assert isinstance(document, PolicyDocument)
    assert document.tenant == "acme"
    assert graph.node_count == 2
    first = graph.signatures[0]
    assert graph.visits_of(first) == 9
    assert graph.edge(first, "memory").failures == 2
    assert graph.edge(first, "planner").reward_m2 == pytest.approx(
        sum((r - 0.7) ** 2 for r in (0.6, 0.7, 0.8, 0.7))
    )
