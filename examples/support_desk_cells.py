"""Two cells of examples/support_desk_pipeline.yaml as plain Python functions, served with

    export AGENSBUS_PIPELINE=examples/support_desk_pipeline.yaml
    agensbus serve-cells examples/support_desk_cells.py

The drafter writes its answer from the evidence the knowledge-base lookup put in the
handoff; the reviewer criticises the draft. Replace their bodies with your own agents.
"""

from services.sdk import CellFailed, Result, Task, cell


def words(text: str) -> int:
    return len(text.split())


@cell("drafter")
def draft(task: Task) -> Result:
    """A sync function: it runs in a thread, so it may block."""
    sources = "; ".join(task.evidence) or "no knowledge-base article"
    style = "in three lines" if task.protocol == "terse" else "step by step"
    answer = f"{task.goal} Answered {style} ({task.model} model) from: {sources}."
    prompt = " ".join([task.goal, *task.evidence])
    return Result(draft_answer=answer, tokens_in=words(prompt), tokens_out=words(answer))


@cell("reviewer")
async def review(task: Task) -> str:
    """An async function; a plain string is the critique (the field of a critic)."""
    if task.draft_answer is None:
        # No retry would give it a draft: fail the step at once.
        raise CellFailed("schema", "there is no draft to review", retry=False)
    if task.evidence:
        return "The draft cites the knowledge base; check the steps are in order."
    return "The draft cites nothing: look the ticket up in the knowledge base first."
