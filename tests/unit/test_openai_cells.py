"""Every cell kind through the openai backend: the prompt of each role and protocol is its
skill card (user cards included), memory retrieves from the document index without a
model, web_search reads its provider's hits or fails without one, and the worker's start
turns bad cards or tool settings into a one-line usage error."""

import asyncio
import json
import logging
import shutil
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from schemas.events import FailureKind
from schemas.records import Role, TrajectoryState, Verdict
from services.cli import cli
from services.policy import Cell, CellPool, Variant, make_pool
from services.runtime.plugins import PluginConfigError
from services.skills import SkillError, Skills, load_skills, output_of
from services.worker.backend import make_backend
from services.worker.openai import OpenAIBackend
from services.worker.openai.client import ChatClient, RetryPolicy
from services.worker.openai.models import ModelTable
from services.worker.openai.testing import Reply, Request, ScriptedServer, completion, scripted
from services.worker.tools import ToolConfigError, Tools
from services.worker.tools.web_search import SearxNG
from tests.unit.support_openai import SCENARIO, a_state, settings, spec_for
from tests.unit.support_skills import card_text, write_card
from tests.unit.support_tools import corpus, index_of, searxng_answer

PROTOCOLS = ("concise", "chain_of_thought", "evidence_first")


def every_cell_pool() -> CellPool:
    single = {
        Role.PLANNER: "planner",
        Role.MEMORY: "memory",
        Role.WEB_SEARCH: "web_search",
        Role.CRITIC: "critic",
        Role.VERIFIER: "verifier",
        Role.SYNTHESIZER: "synthesizer",
        Role.EVALUATOR: "evaluator",
    }
    cells = [Cell(name, role, (Variant(name),)) for role, name in single.items()]
    cells.append(Cell("solver", Role.SOLVER, tuple(Variant("solver", p) for p in PROTOCOLS)))
    order = ["planner", "memory", "web_search", "solver", "critic", "verifier", "synthesizer"]
    return make_pool(cells, [*order, "evaluator"])


POOL = every_cell_pool()

ANSWERS: dict[str, dict[str, Any]] = {
    output_of(Role.PLANNER): {"subproblem": "1. find the affected versions"},
    output_of(Role.MEMORY): {"evidence": ["[recalled] Acme 3.4.3 fixes it"]},
    output_of(Role.WEB_SEARCH): {"evidence": ["Fixed in 3.4.3 (https://acme.example/01)"]},
    output_of(Role.SOLVER): {"draft_answer": "3.0 to 3.4.2"},
    output_of(Role.CRITIC): {"critique": "1. cite the advisory"},
    output_of(Role.VERIFIER): {"verdict": "supported", "rationale": "the advisory says so"},
    output_of(Role.SYNTHESIZER): {"merged_answer": "3.0 to 3.4.2 (ACME-2025-01)"},
    output_of(Role.EVALUATOR): {"done": True, "final_answer": "3.0 to 3.4.2"},
}


def by_schema(request: Request) -> Reply:
    """The answer of the role whose output schema the request asks for."""
    name = request.body["response_format"]["json_schema"]["name"]
    return completion(json.dumps(ANSWERS[name]), 300, 40)


def backend(
    server: ScriptedServer, *, skills: Skills | None = None, tools: Tools | None = None
) -> OpenAIBackend:
    table = ModelTable({"balanced": spec_for(server.base_url)}, "balanced")
    client = ChatClient(RetryPolicy(max_retries=0))
    return OpenAIBackend(POOL, table, client, skills=skills, tools=tools)


def searxng(server: ScriptedServer) -> SearxNG:
    return SearxNG(server.base_url.removesuffix("/v1"))


def system_of(request: Request) -> str:
    content: str = request.body["messages"][0]["content"]
    return content


def user_of(request: Request) -> str:
    content: str = request.body["messages"][1]["content"]
    return content


def test_every_cell_kind_runs_with_its_card() -> None:
    skills = load_skills()

    async def run() -> None:
        async with scripted() as server:
            server.chat(by_schema)
            server.answer(
                "/search",
                searxng_answer({"title": "ACME-2025-01", "url": "https://acme.example/01"}),
            )
            cells = backend(server, tools=Tools(search=searxng(server)))
            for cell in POOL.cells.values():
                for variant in cell.variants:
                    before = len(server.sent())
                    execution = await cells.execute(a_state(), variant)
                    [request] = server.sent()[before:]
                    assert execution.result.succeeded, variant.action
                    assert execution.tokens_in == 300, variant.action
                    system = system_of(request)
                    assert skills.card(cell.role).body in system, variant.action
                    wanted = request.body["response_format"]["json_schema"]["name"]
                    assert wanted == skills.card(cell.role).output
                    if variant.protocol:
                        assert skills.card(cell.role, variant.protocol).body in system
                    others = [p for p in PROTOCOLS if p != variant.protocol]
                    for other in others:
                        assert skills.card(Role.SOLVER, other).body not in system
                    delta = execution.result.delta
                    match cell.role:
                        case Role.CRITIC:
                            assert delta.critique == "1. cite the advisory"
                        case Role.SYNTHESIZER:
                            assert delta.merged_answer == "3.0 to 3.4.2 (ACME-2025-01)"
                        case Role.VERIFIER:
                            assert delta.verification is not None
                            assert delta.verification.verdict is Verdict.SUPPORTED
                        case Role.EVALUATOR:
                            assert execution.result.done
                        case Role.WEB_SEARCH:
                            assert delta.evidence == ANSWERS["web_search_output"]["evidence"]
            await cells.stop()
        # Each solver protocol once, every other role once.
        assert len(server.sent()) == len(POOL.actions)

    asyncio.run(run())


def test_a_user_card_replaces_the_shipped_one_in_the_prompt(tmp_path: Path) -> None:
    write_card(
        tmp_path,
        "critic",
        card_text(
            "Attack the draft like a hostile reviewer.",
            name="critic",
            role="critic",
            output="critic_output",
        ),
    )

    async def run() -> str:
        async with scripted() as server:
            server.chat(by_schema)
            cells = backend(server, skills=load_skills(tmp_path))
            await cells.execute(a_state(), Variant("critic"))
            await cells.stop()
        return system_of(server.sent()[0])

    system = asyncio.run(run())
    assert "Attack the draft like a hostile reviewer." in system
    assert load_skills().card(Role.CRITIC).body not in system


def test_a_backend_refuses_a_pool_protocol_without_a_card() -> None:
    solver = Cell("solver", Role.SOLVER, (Variant("solver", "socratic"),))
    table = ModelTable({"balanced": spec_for("http://127.0.0.1:9/v1")}, "balanced")
    with pytest.raises(SkillError, match="no card for protocol socratic of role solver"):
        OpenAIBackend(make_pool([solver], ["solver"]), table, ChatClient(RetryPolicy()))


# --- memory --------------------------------------------------------------------------------


def with_goal(goal: str, plan: str | None = None) -> TrajectoryState:
    state = a_state()
    handoff = state.handoff.model_copy(update={"goal": goal, "subproblem": plan, "evidence": []})
    return state.model_copy(update={"handoff": handoff})


def test_memory_retrieves_passages_from_the_documents_without_a_model(tmp_path: Path) -> None:
    index = index_of(corpus(tmp_path))

    async def run() -> Any:
        async with scripted() as server:
            server.chat(by_schema)
            cells = backend(server, tools=Tools(index=index, memory_top_k=2))
            execution = await cells.execute(
                with_goal("How do I mitigate ZEN-7?", "1. find the fixed release"),
                Variant("memory"),
            )
            await cells.stop()
        assert server.requests == []  # no model was asked, not even readiness
        return execution

    execution = asyncio.run(run())
    result = execution.result
    assert result.succeeded and execution.failure_kind is None
    assert (execution.tokens_in, execution.tokens_out, result.tokens, execution.cost_usd) == (
        0,
        0,
        0,
        0.0,
    )
    assert execution.latency_s > 0
    assert len(result.delta.evidence) == 2
    first = result.delta.evidence[0]
    assert first.startswith("[vendors/zen/ZEN-7.md] ## Mitigation")
    assert "rotates the session identifier" in first


def test_memory_without_documents_asks_the_model_to_recall() -> None:
    async def run() -> None:
        async with scripted() as server:
            server.chat(by_schema)
            cells = backend(server)
            execution = await cells.execute(a_state(), Variant("memory"))
            await cells.stop()
        assert execution.result.delta.evidence == ["[recalled] Acme 3.4.3 fixes it"]
        assert load_skills().card(Role.MEMORY).body in system_of(server.sent()[0])

    asyncio.run(run())


# --- web_search ----------------------------------------------------------------------------


def test_web_search_without_a_provider_fails_logged_once_and_counted(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def run() -> None:
        async with scripted() as server:
            cells = backend(server)
            with caplog.at_level(logging.WARNING, logger="agensbus.worker.openai"):
                first = await cells.execute(a_state(), Variant("web_search"))
                second = await cells.execute(a_state(), Variant("web_search"))
            await cells.stop()
        assert server.requests == []
        for execution in (first, second):
            assert not execution.result.succeeded
            assert execution.failure_kind is FailureKind.UPSTREAM
            assert (execution.result.tokens, execution.attempts, execution.result.retries) == (
                0,
                0,
                0,
            )
        warned = [r for r in caplog.records if "no web search provider" in r.getMessage()]
        assert len(warned) == 1
        assert cells.searches_unavailable == 2
        _, detail = cells.readiness()
        assert "no web search provider (2 web_search steps failed for it)" in detail

    asyncio.run(run())


def test_web_search_hits_are_read_by_the_model_with_the_card() -> None:
    async def run() -> None:
        async with scripted() as server:
            server.chat(by_schema)
            server.answer(
                "/search",
                searxng_answer(
                    {"title": "ACME-2025-01", "url": "https://acme.example/01", "content": "3.4.3"},
                    {"title": "Forum", "url": "https://forum.example/t/9", "content": "works"},
                ),
            )
            cells = backend(server, tools=Tools(search=searxng(server), search_top_k=1))
            execution = await cells.execute(
                with_goal("Acme fix?", "1. fixed release"), Variant("web_search")
            )
            await cells.stop()
        assert execution.result.succeeded and execution.tokens_in == 300
        [search] = server.sent("/search?q=Acme+fix%3F%0A1.+fixed+release&format=json")
        assert search.method == "GET"
        [chat] = server.sent()
        user = user_of(chat)
        assert "Search results:\n1. ACME-2025-01\n   https://acme.example/01\n   3.4.3" in user
        assert "forum.example" not in user  # search_top_k = 1
        assert load_skills().card(Role.WEB_SEARCH).body in system_of(chat)

    asyncio.run(run())


def test_web_search_without_hits_succeeds_with_no_evidence_and_no_model() -> None:
    async def run() -> None:
        async with scripted() as server:
            server.answer("/search", searxng_answer())
            cells = backend(server, tools=Tools(search=searxng(server)))
            execution = await cells.execute(a_state(), Variant("web_search"))
            await cells.stop()
        assert execution.result.succeeded and execution.result.delta.evidence == []
        assert (execution.result.tokens, execution.attempts) == (0, 1)
        assert server.sent() == []

    asyncio.run(run())


def test_a_failing_provider_fails_the_step_with_its_kind() -> None:
    async def run() -> None:
        async with scripted() as server:
            server.answer("/search", Reply(503, {}))
            cells = backend(server, tools=Tools(search=searxng(server)))
            execution = await cells.execute(a_state(), Variant("web_search"))
            await cells.stop()
        assert not execution.result.succeeded
        assert (execution.failure_kind, execution.attempts) == (FailureKind.SERVER, 1)
        assert server.sent() == []

    asyncio.run(run())


# --- the worker's start ----------------------------------------------------------------------


def test_the_worker_builds_its_cards_and_tools_from_settings(tmp_path: Path) -> None:
    docs = corpus(tmp_path / "docs")
    built = make_backend(
        settings(
            openai_base_url="http://127.0.0.1:9/v1",
            openai_api_key="sk-x",
            openai_default_model="small",
            documents_dir=docs,
            memory_top_k=3,
        ),
        SCENARIO.pipeline,
    )
    assert isinstance(built, OpenAIBackend)
    assert built.tools.index is not None and built.tools.memory_top_k == 3
    _, detail = built.readiness()
    assert f"memory retrieves from {built.tools.index.describe()}" in detail
    assert f"from 3 documents in {docs}" in detail
    # The index was built at start: the steps do not read the directory again.
    shutil.rmtree(docs)
    memory = SCENARIO.pool.cells["memory"].default
    execution = asyncio.run(built.execute(with_goal("ZEN-7 mitigation"), memory))
    assert execution.result.delta.evidence[0].startswith("[vendors/zen/ZEN-7.md]")


@pytest.mark.parametrize(
    ("values", "error"),
    [
        ({"documents_dir": "nope"}, ToolConfigError),
        ({"web_search_provider": "searxng"}, ToolConfigError),
        ({"skills_dir": "cards"}, SkillError),
    ],
)
def test_bad_cards_or_tools_stop_the_worker_build(
    tmp_path: Path, values: dict[str, Any], error: type[Exception]
) -> None:
    write_card(tmp_path / "cards", "bad", card_text(role="oracle"))
    paths = {k: tmp_path / v if k.endswith("_dir") else v for k, v in values.items()}
    with pytest.raises(PluginConfigError) as caught:
        make_backend(
            settings(
                openai_base_url="http://127.0.0.1:9/v1",
                openai_api_key="k",
                openai_default_model="small",
                **paths,
            ),
            SCENARIO.pipeline,
        )
    assert isinstance(caught.value.__cause__, error)


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--documents-dir", "{tmp}/nope"], "documents_dir {tmp}/nope: no such directory"),
        (["--skills-dir", "{tmp}/cards"], "skill card {tmp}/cards/bad/SKILL.md: unknown role"),
        (["--web-search-provider", "searxng"], "searxng needs --web-search-url"),
    ],
)
def test_the_worker_command_reports_them_in_one_line(
    tmp_path: Path, flags: list[str], message: str
) -> None:
    write_card(tmp_path / "cards", "bad", card_text(role="oracle"))
    args = [f.format(tmp=tmp_path) for f in flags]
    result = CliRunner().invoke(
        cli,
        ["worker", "--worker-backend", "openai", "--kafka-bootstrap", "127.0.0.1:1", *args],
        env={
            "AGENSBUS_OPENAI_BASE_URL": "http://127.0.0.1:9/v1",
            "AGENSBUS_OPENAI_API_KEY": "k",
            "AGENSBUS_OPENAI_DEFAULT_MODEL": "small",
        },
    )
    assert result.exit_code == 2, result.output
    assert message.format(tmp=tmp_path) in result.output
    assert len(result.output.strip().splitlines()) == 1
    assert "Traceback" not in result.output
