"""Lexical retrieval over passages with BM25 (the bm25s library): the index is built once,
when the worker starts, and each query tokenizes with the same vocabulary."""

from collections.abc import Sequence
from dataclasses import dataclass

import bm25s
import Stemmer
from bm25s.tokenization import Tokenizer

from schemas.records import Handoff
from services.worker.tools.documents import Passage

#: Words of one character too: identifiers and versions (ADV-7, 2.4.1) are mostly short
#: parts, and the library's default pattern drops them.
_TOKEN = r"(?u)\b\w+\b"


@dataclass(frozen=True, slots=True)
class Retrieved:
    passage: Passage
    score: float


class PassageIndex:
    def __init__(self, passages: Sequence[Passage], documents: int, where: str) -> None:
        if not passages:
            raise ValueError("an index needs at least one passage")
        self.passages = tuple(passages)
        self.documents = documents
        self.where = where
        # Stemmed, so that "mitigate" finds "mitigation" and "affected" finds "affects".
        stemmer = Stemmer.Stemmer("english")
        self._tokenizer = Tokenizer(splitter=_TOKEN, stopwords="en", stemmer=stemmer)
        tokens = self._tokenizer.tokenize([p.indexed for p in self.passages], show_progress=False)
        self._bm25 = bm25s.BM25()
        self._bm25.index(tokens, show_progress=False)

    def search(self, query: str, k: int) -> list[Retrieved]:
        """The ``k`` best passages for ``query``, best first; passages sharing no term
        with the query are not returned (a score of 0 is no evidence)."""
        tokens = self._tokenizer.tokenize([query], update_vocab=False, show_progress=False)
        k = min(k, len(self.passages))
        ids, scores = self._bm25.retrieve(tokens, k=k, show_progress=False, n_threads=1)
        return [
            Retrieved(self.passages[int(i)], float(s))
            for i, s in zip(ids[0], scores[0], strict=True)
            if s > 0
        ]

    def describe(self) -> str:
        return f"{len(self.passages)} passages from {self.documents} documents in {self.where}"


def query_of(handoff: Handoff) -> str:
    """What a tool cell looks up: the goal, and the plan when there is one."""
    return "\n".join(part for part in (handoff.goal, handoff.subproblem or "") if part)
