"""The RelativeJudge with real models: several judge models each score a group of
trajectories side by side (prompt and parsing in :mod:`judge_prompt`); a trajectory's
reward is the mean of the judges that scored it, its confidence their agreement.

A judge whose calls fail after their retries, or whose answer stays unreadable after one
corrective request, abstains on the whole group; one that leaves out or garbles an
attempt abstains on that attempt. A trajectory no judge scored gets no reward at all:
never a made-up score. One judge alone gets the rubric's confidence for one judge (1: no
disagreement was measured), the same as a deployment configured with a single judge; the
reward's ``judges`` list says how many judges stand behind it.
"""

import asyncio
import functools
import logging
import operator
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from schemas.events import FailureKind, TrajectoryCompleted
from schemas.records import JudgeScore
from services.policy.outcomes import Judgement
from services.policy.rubric import overall_score
from services.worker.openai import judge_prompt
from services.worker.openai.client import ChatClient, ChatFailure
from services.worker.openai.models import ModelSpec
from services.worker.openai.outputs import OutputError


@dataclass(frozen=True, slots=True)
class JudgeCall:
    """One judge model's work on one group: what it spent and how it ended."""

    model: str
    requests: int
    tokens_in: int
    tokens_out: int
    cost_usd: float
    latency_s: float
    failure: FailureKind | None
    """Why it scored nothing: a call failure after retries, or ``schema`` when the answer
    stayed unreadable after the corrective request."""
    abstained: int
    """Trajectories of the group it gave no usable score for."""


@dataclass(frozen=True)
class Verdict:
    judgements: list[Judgement]
    """One per trajectory at least one judge scored, in group order."""
    unscored: list[str] = field(default_factory=list)
    """Trajectories no judge scored: they get no reward."""
    calls: list[JudgeCall] = field(default_factory=list)


def judge_name(model: str) -> str:
    """The model name as a reward's judge field allows it (provider ids like
    ``openai/gpt-4o`` carry a slash)."""
    return re.sub(r"[^A-Za-z0-9_.\-]", "-", model).lstrip("_.-")[:64] or "judge"


class LLMJudge:
    def __init__(
        self, judges: Sequence[ModelSpec], client: ChatClient, log: logging.Logger | None = None
    ) -> None:
        if not judges:
            raise ValueError("the LLM judge needs at least one judge model")
        self.judges = list(judges)
        self.client = client
        self._log = log or logging.getLogger("agensbus.judge.openai")

    async def score_group(self, trajectories: Sequence[TrajectoryCompleted]) -> Verdict:
        members = list(trajectories)
        group_labels = judge_prompt.labels(len(members))
        asked = await asyncio.gather(
            *(self._ask(spec, members, group_labels, i) for i, spec in enumerate(self.judges))
        )
        judgements: list[Judgement] = []
        unscored: list[str] = []
        for label, trajectory in zip(group_labels, members, strict=True):
            scores = [
                JudgeScore(judge=judge_name(spec.name), axes=axes, overall=overall_score(axes))
                for spec, (scored, _) in zip(self.judges, asked, strict=True)
                if scored is not None and (axes := scored.axes.get(label)) is not None
            ]
            if scores:
                judgements.append(Judgement.of(trajectory.trajectory_id, scores))
            else:
                unscored.append(trajectory.trajectory_id)
        if unscored:
            self._log.warning(
                "no judge scored these trajectories; they get no reward",
                extra={"trajectories": unscored, "judges": [s.name for s in self.judges]},
            )
        return Verdict(judgements, unscored, [call for _, call in asked])

    async def _ask(
        self,
        spec: ModelSpec,
        members: list[TrajectoryCompleted],
        group_labels: list[str],
        rotation: int,
    ) -> tuple[judge_prompt.Scored | None, JudgeCall]:
        """One judge's answer for the group (``None``: it abstains on all of it)."""
        began = time.monotonic()
        fitting, too_long = judge_prompt.parts(
            members, group_labels, spec.structured_output, spec.fits, rotation
        )
        if too_long or len(fitting) > 1:
            self._log.warning(
                "the group does not fit the judge's context window; it is judged in parts",
                extra={"model": spec.name, "parts": len(fitting), "too_long": too_long},
            )
        tally = _Tally()
        answers = await asyncio.gather(*(self._answer(spec, part, tally) for part in fitting))
        read = [answer for answer in answers if isinstance(answer, judge_prompt.Scored)]
        failures = [answer for answer in answers if isinstance(answer, FailureKind)]
        scored: judge_prompt.Scored | None = None
        if read or not failures:
            unfit = dict.fromkeys(too_long, f"does not fit the context window of {spec.name}")
            scored = functools.reduce(operator.or_, read, judge_prompt.Scored(rejected=unfit))
            if scored.rejected:
                self._log.info(
                    "judge abstained on some trajectories",
                    extra={"model": spec.name, "labels": scored.rejected},
                )
        abstained = len(members) if scored is None else len(members) - len(scored.axes)
        call = JudgeCall(
            spec.name,
            tally.requests,
            tally.tokens_in,
            tally.tokens_out,
            spec.cost_usd(tally.tokens_in, tally.tokens_out),
            time.monotonic() - began,
            failures[0] if scored is None else None,
            abstained,
        )
        return scored, call

    async def _answer(
        self, spec: ModelSpec, part: judge_prompt.Part, tally: "_Tally"
    ) -> judge_prompt.Scored | FailureKind:
        """The judge's scores for one part, or why it gave none."""
        messages = part.messages
        wanted = judge_prompt.response_format(part.labels, spec.structured_output)
        for _ in range(2):
            try:
                reply = await self.client.complete(spec, messages, wanted)
            except ChatFailure as failure:
                tally.requests += failure.attempts
                self._log.warning(
                    "judge model failed; it abstains on the attempts it was asked about",
                    extra={"model": spec.name, "failure_kind": failure.kind.value},
                )
                return failure.kind
            tally.requests += reply.attempts
            tally.tokens_in += reply.tokens_in
            tally.tokens_out += reply.tokens_out
            try:
                return judge_prompt.parse(reply.content, part.labels)
            except OutputError as error:
                messages = [*messages, *judge_prompt.correction(reply.content, error)]
        self._log.warning(
            "judge answer unreadable after a correction; it abstains on the attempts it was shown",
            extra={"model": spec.name},
        )
        return FailureKind.SCHEMA


@dataclass
class _Tally:
    """What one judge spent on one group, over all its requests."""

    requests: int = 0
    tokens_in: int = 0
    tokens_out: int = 0
