"""Web search as a tool: a provider protocol, the registry of shipped providers, and one of
them, SearxNG's JSON API (self-hostable, no account). No provider is enabled by default;
a web_search step then fails (see the openai backend)."""

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import httpx

from schemas.events import FailureKind
from services.runtime.settings import Settings
from services.worker.http_failures import classify, scrub
from services.worker.tools.documents import ToolConfigError

SEARCH_TIMEOUT_S = 20.0


@dataclass(frozen=True, slots=True)
class Hit:
    title: str
    url: str
    snippet: str


class SearchFailure(Exception):
    """A search that produced no answer, with its kind in the failure taxonomy."""

    def __init__(self, kind: FailureKind, detail: str) -> None:
        super().__init__(f"{kind.value}: {detail}")
        self.kind = kind
        self.detail = detail


class SearchProvider(Protocol):
    @property
    def name(self) -> str: ...

    async def search(self, query: str, k: int) -> list[Hit]:
        """At most ``k`` hits for ``query``, best first; raises :class:`SearchFailure`."""
        ...

    async def close(self) -> None: ...


class SearxNG:
    """``GET {base_url}/search?q=...&format=json`` of a SearxNG instance (its JSON output
    format must be enabled in the instance's settings)."""

    name = "searxng"

    def __init__(self, base_url: str, timeout_s: float = SEARCH_TIMEOUT_S) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout_s = timeout_s
        self._http: httpx.AsyncClient | None = None

    async def search(self, query: str, k: int) -> list[Hit]:
        if self._http is None:  # created on first use, in the loop the worker runs in
            self._http = httpx.AsyncClient(follow_redirects=False)
        try:
            response = await self._http.get(
                f"{self.base_url}/search",
                params={"q": query, "format": "json"},
                timeout=self.timeout_s,
            )
        except httpx.TimeoutException:
            detail = f"no reply within {self.timeout_s:g} s"
            raise SearchFailure(FailureKind.TIMEOUT, detail) from None
        except httpx.TransportError as error:
            detail = f"{type(error).__name__} reaching {self.base_url}"
            raise SearchFailure(FailureKind.NETWORK, detail) from None
        if response.status_code >= 400:
            detail = f"HTTP {response.status_code}: {scrub(response.text, None)}"
            raise SearchFailure(classify(response.status_code, response.text), detail)
        try:
            payload = response.json()
        except ValueError:
            detail = f"not JSON (is format=json enabled?): {scrub(response.text, None)}"
            raise SearchFailure(FailureKind.UPSTREAM, detail) from None
        return hits_of(payload, k)

    async def close(self) -> None:
        if self._http is not None:
            await self._http.aclose()
            self._http = None


def hits_of(payload: Any, k: int) -> list[Hit]:
    """The first ``k`` usable results of a SearxNG JSON answer (a result without a URL is
    not citable and is left out)."""
    results = payload.get("results") if isinstance(payload, dict) else None
    if not isinstance(results, list):
        raise SearchFailure(FailureKind.UPSTREAM, "the answer has no list of results")
    hits = []
    for result in results:
        if isinstance(result, dict) and isinstance(result.get("url"), str) and result["url"]:
            title, snippet = result.get("title"), result.get("content")
            hits.append(
                Hit(
                    title if isinstance(title, str) else "",
                    result["url"],
                    snippet if isinstance(snippet, str) else "",
                )
            )
    return hits[:k]


def _searxng(settings: Settings) -> SearchProvider:
    if not settings.web_search_url:
        raise ToolConfigError(
            "web_search_provider searxng needs --web-search-url / AGENSBUS_WEB_SEARCH_URL "
            "(the instance's root, e.g. http://127.0.0.1:8888)"
        )
    return SearxNG(settings.web_search_url)


#: The providers ``web_search_provider`` can name, besides ``none``.
PROVIDERS: dict[str, Callable[[Settings], SearchProvider]] = {"searxng": _searxng}


def make_provider(settings: Settings) -> SearchProvider | None:
    """The configured provider, or None; raises :class:`ToolConfigError`."""
    if settings.web_search_provider == "none":
        return None
    return PROVIDERS[settings.web_search_provider](settings)
