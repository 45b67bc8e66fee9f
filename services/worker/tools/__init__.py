"""The tools behind the tool cells: retrieval over a document directory for memory, a web
search provider for web_search. Built once when the worker starts."""

from dataclasses import dataclass

from services.runtime.settings import Settings
from services.worker.tools.documents import ToolConfigError, read_documents
from services.worker.tools.retrieval import PassageIndex, query_of
from services.worker.tools.web_search import Hit, SearchFailure, SearchProvider, make_provider


@dataclass(frozen=True)
class Tools:
    #: None: the memory cell asks the model to recall instead.
    index: PassageIndex | None = None
    #: None: web_search steps fail (no provider enabled).
    search: SearchProvider | None = None
    memory_top_k: int = 4
    search_top_k: int = 5

    def describe(self) -> str:
        memory = (
            f"memory retrieves from {self.index.describe()}"
            if self.index
            else "memory recalled by the model (no documents_dir)"
        )
        search = f"web search via {self.search.name}" if self.search else "no web search provider"
        return f"{memory}; {search}"

    async def close(self) -> None:
        if self.search is not None:
            await self.search.close()


def build_tools(settings: Settings) -> Tools:
    """Read and index the documents, pick the search provider; raises
    :class:`ToolConfigError` when either is misconfigured."""
    index = None
    if settings.documents_dir is not None:
        passages, documents = read_documents(settings.documents_dir)
        index = PassageIndex(passages, documents, str(settings.documents_dir))
    return Tools(
        index,
        make_provider(settings),
        settings.memory_top_k,
        settings.web_search_top_k,
    )


__all__ = [
    "Hit",
    "PassageIndex",
    "SearchFailure",
    "SearchProvider",
    "ToolConfigError",
    "Tools",
    "build_tools",
    "query_of",
]
