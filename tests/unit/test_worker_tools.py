"""The tools behind the tool cells: documents split into passages, BM25 retrieval over a
document directory, the SearxNG provider against a local HTTP server, and building the
tools from settings (a bad documents_dir or provider is a configuration error)."""

import asyncio
from pathlib import Path

import pytest

from schemas.events import FailureKind
from schemas.records import Handoff
from services.runtime.settings import Settings
from services.worker.openai.testing import Reply, scripted
from services.worker.tools import ToolConfigError, build_tools, query_of
from services.worker.tools.documents import read_documents, split_passages
from services.worker.tools.web_search import PROVIDERS, SearchFailure, SearxNG
from tests.unit.support_openai import closed_port
from tests.unit.support_tools import corpus, index_of, searxng_answer

# --- passages ------------------------------------------------------------------------------


def test_paragraphs_pack_into_passages_and_headings_start_new_ones() -> None:
    text = "# Title\n\nfirst para.\n\nsecond para.\n\n## Section\n\nthird para."
    assert split_passages(text) == [
        "# Title\n\nfirst para.\n\nsecond para.",
        "## Section\n\nthird para.",
    ]
    assert split_passages("a b c d e f", max_chars=5) == ["a b c", "d e f"]
    assert split_passages("one.\n\ntwo.\n\nthree.", max_chars=10) == ["one.\n\ntwo.", "three."]
    assert split_passages(" \n\n ") == []


def test_a_document_directory_reads_md_and_txt_recursively(tmp_path: Path) -> None:
    passages, documents = read_documents(corpus(tmp_path))
    assert documents == 3
    assert {p.source for p in passages} == {
        "notes/glossary.txt",
        "vendors/acme/ACME-2025-01.md",
        "vendors/zen/ZEN-7.md",
    }
    mitigation = next(p for p in passages if p.text.startswith("## Mitigation") and "Zen" in p.text)
    assert mitigation.title == "ZEN-7: Session fixation in Zen Portal"
    assert mitigation.evidence.startswith("[vendors/zen/ZEN-7.md] ## Mitigation")


def test_a_missing_or_empty_documents_dir_is_a_configuration_error(tmp_path: Path) -> None:
    with pytest.raises(ToolConfigError, match="no such directory"):
        read_documents(tmp_path / "nope")
    (tmp_path / "data.json").write_text("{}")
    (tmp_path / "empty.md").write_text("\n\n")
    with pytest.raises(ToolConfigError, match="holds no documents"):
        read_documents(tmp_path)


# --- retrieval -----------------------------------------------------------------------------


def test_bm25_returns_the_passages_that_answer_the_query(tmp_path: Path) -> None:
    index = index_of(corpus(tmp_path))
    assert index.describe() == f"{len(index.passages)} passages from 3 documents in {tmp_path}"

    [best, *_] = index.search("Which versions of Acme Viewer are affected?", 4)
    assert best.passage.source == "vendors/acme/ACME-2025-01.md"
    assert "3.0 through 3.4.2" in best.passage.text

    # A passage found through its document's title: the mitigation section never names
    # the advisory, the query names only the advisory.
    found = index.search("ZEN-7 mitigation", 2)
    assert found[0].passage.source == "vendors/zen/ZEN-7.md"
    assert "rotates the session identifier" in found[0].passage.text

    [definition] = index.search("session fixation: what does the attacker do?", 1)
    assert definition.passage.source == "notes/glossary.txt"
    scores = [r.score for r in index.search("session fixation", 4)]
    assert scores == sorted(scores, reverse=True) and all(s > 0 for s in scores)


def test_a_query_sharing_no_word_with_the_documents_finds_nothing(tmp_path: Path) -> None:
    index = index_of(corpus(tmp_path))
    assert index.search("kubernetes ingress", 4) == []
    assert index.search("the of and is", 4) == index.search("", 4) == []
    assert len(index.search("mitigation upgrade session heap", 50)) <= len(index.passages)


def test_the_query_is_the_goal_and_the_plan() -> None:
    handoff = Handoff(goal="Is ZEN-7 fixed?", subproblem="1. find the fixed release")
    assert query_of(handoff) == "Is ZEN-7 fixed?\n1. find the fixed release"
    assert query_of(Handoff(goal="g")) == "g"


# --- web search: SearxNG against a local server --------------------------------------------


def test_searxng_returns_hits_from_its_json_api() -> None:
    async def run() -> None:
        async with scripted() as server:
            server.answer(
                "/search",
                searxng_answer(
                    {"title": "ZEN-7", "url": "https://zen.example/7", "content": "Fixed in 2.9"},
                    {"title": "no url", "content": "dropped"},
                    {"title": "Mirror", "url": "https://mirror.example/7", "content": None},
                    {"title": "Third", "url": "https://third.example", "content": "more"},
                ),
            )
            root = server.base_url.removesuffix("/v1")
            provider = SearxNG(root + "/")
            hits = await provider.search("ZEN-7 fix & rollout", 2)
            await provider.close()
        assert [(h.title, h.url, h.snippet) for h in hits] == [
            ("ZEN-7", "https://zen.example/7", "Fixed in 2.9"),
            ("Mirror", "https://mirror.example/7", ""),
        ]
        [request] = server.requests
        assert request.method == "GET"
        assert request.path == "/search?q=ZEN-7+fix+%26+rollout&format=json"

    asyncio.run(run())


@pytest.mark.parametrize(
    ("reply", "kind", "detail"),
    [
        (Reply(429, {}), FailureKind.RATE_LIMITED, "HTTP 429"),
        (Reply(502, {}), FailureKind.SERVER, "HTTP 502"),
        (Reply(403, {}), FailureKind.AUTH, "HTTP 403"),
        (Reply(200, b"<html>search page</html>"), FailureKind.UPSTREAM, "format=json"),
        (Reply(200, {"answers": []}), FailureKind.UPSTREAM, "no list of results"),
        (Reply(200, {}, delay_s=2.0), FailureKind.TIMEOUT, "no reply within 0.2 s"),
    ],
)
def test_searxng_failures_carry_their_kind(reply: Reply, kind: FailureKind, detail: str) -> None:
    async def run() -> SearchFailure:
        async with scripted() as server:
            server.answer("/search", reply)
            provider = SearxNG(server.base_url.removesuffix("/v1"), timeout_s=0.2)
            try:
                with pytest.raises(SearchFailure) as raised:
                    await provider.search("q", 3)
            finally:
                await provider.close()
        return raised.value

    failure = asyncio.run(run())
    assert failure.kind is kind and detail in failure.detail


def test_an_unreachable_searxng_is_a_network_failure() -> None:
    async def run() -> None:
        provider = SearxNG(f"http://127.0.0.1:{closed_port()}")
        with pytest.raises(SearchFailure) as raised:
            await provider.search("q", 3)
        await provider.close()
        assert raised.value.kind is FailureKind.NETWORK

    asyncio.run(run())


# --- building the tools from settings ------------------------------------------------------


def test_tools_from_settings(tmp_path: Path) -> None:
    plain = build_tools(Settings())
    assert (plain.index, plain.search) == (None, None)
    assert (
        plain.describe()
        == "memory recalled by the model (no documents_dir); no web search provider"
    )

    tools = build_tools(
        Settings(
            documents_dir=corpus(tmp_path),
            memory_top_k=2,
            web_search_provider="searxng",
            web_search_url="http://127.0.0.1:8888",
        )
    )
    assert tools.index is not None and tools.index.documents == 3
    assert isinstance(tools.search, SearxNG) and tools.search.base_url == "http://127.0.0.1:8888"
    assert tools.memory_top_k == 2
    assert tools.describe().startswith(f"memory retrieves from {tools.index.describe()}")
    assert tools.describe().endswith("web search via searxng")


def test_tool_settings_that_cannot_work_are_errors(tmp_path: Path) -> None:
    with pytest.raises(ToolConfigError, match="needs --web-search-url"):
        build_tools(Settings(web_search_provider="searxng"))
    with pytest.raises(ToolConfigError, match=f"documents_dir {tmp_path / 'nope'}: no such"):
        build_tools(Settings(documents_dir=tmp_path / "nope"))


def test_every_provider_the_settings_offer_is_registered() -> None:
    offered = Settings.model_fields["web_search_provider"].annotation
    assert set(offered.__args__) == {"none", *PROVIDERS}  # type: ignore[union-attr]
