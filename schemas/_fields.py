"""Fields that mean the same in every contract that carries them.

Each is a type that holds its description (and its bounds, where they too are the same
everywhere), so the meaning is written once and every JSON Schema property that carries the
field describes it. A field whose meaning depends on its model is described on the model.
"""

from typing import Annotated

from pydantic import Field

from schemas._types import ActionId, DecisionId, Identifier, Name, ShortText, SignatureText, Text

TenantName = Annotated[
    Name,
    Field(description="the tenant the event or policy belongs to; policies are kept per tenant"),
]
TaskRef = Annotated[Identifier, Field(description="the submitter's id of the task")]
TrajectoryRef = Annotated[
    Identifier,
    Field(description="one attempt at a task; a task with several rollouts has several"),
]
DecisionRef = Annotated[DecisionId, Field(description="`<trajectory_id>:<step>` of the decision")]
TaskClass = Annotated[
    Name | None,
    Field(description="a label chosen by the submitting pipeline; the fold may key on it"),
]
StepIndex = Annotated[
    int,
    Field(ge=0, le=1_000, description="index of the decision within its trajectory, from 0"),
]
TakenAction = Annotated[ActionId, Field(description="the action taken")]
CellName = Annotated[Name, Field(description="the cell (pipeline stage) the action concerns")]
StateSignature = Annotated[
    SignatureText, Field(description="the folded state the action was chosen at")
]
Propensity = Annotated[
    float,
    Field(
        gt=0.0,
        le=1.0,
        description="probability that the acting policy picks this action in this state",
    ),
]
PolicyVersion = Annotated[
    int,
    Field(
        ge=0,
        description="version of the policy the router decided with (of a sharded policy, "
        "the sum of its shards' snapshot versions)",
    ),
]
Retries = Annotated[int, Field(description="calls repeated after transient failures")]

# --- what the cells hand on (a Handoff, and the HandoffDelta one cell writes) ----------------

TaskGoal = Annotated[Text, Field(description="what the task asks for, in natural language")]
Constraints = Annotated[
    list[ShortText], Field(max_length=32, description="constraints the answer must respect")
]
Subproblem = Annotated[Text | None, Field(description="the planner's restatement of what to solve")]
Evidence = Annotated[
    list[Text],
    Field(max_length=64, description="evidence gathered by retrieval and search cells"),
]
DraftAnswer = Annotated[Text | None, Field(description="the solver's draft answer")]
Critique = Annotated[Text | None, Field(description="the critic's objections to the draft")]
MergedAnswer = Annotated[Text | None, Field(description="the synthesizer's final answer")]
