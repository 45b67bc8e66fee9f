"""Reading a /metrics text the way a first scrape after start must look: every counter and
histogram already has its series, all at 0."""

from collections.abc import Collection

from prometheus_client.parser import text_string_to_metric_families

#: The judge's per-model families: a simulated judge calls no model, so no label value is
#: known for them (an LLM judge starts them at 0 for each of its models).
JUDGE_MODEL_FAMILIES = frozenset(
    f"agensbus_judge_{name}"
    for name in ("requests", "failures", "abstentions", "tokens", "cost_usd", "latency_seconds")
)


def not_started_at_zero(text: str, may_be_empty: Collection[str] = ()) -> list[str]:
    """The counters and histograms of ``text`` that have no series yet (unless named in
    ``may_be_empty``), or a series that counted something: each as ``name: why``. Empty
    when the scrape is a clean start."""
    problems = []
    for family in text_string_to_metric_families(text):
        if family.type == "counter":
            counts = [s for s in family.samples if s.name == f"{family.name}_total"]
        elif family.type == "histogram":
            counts = [s for s in family.samples if s.name == f"{family.name}_count"]
        else:
            continue
        if not counts and family.name not in may_be_empty:
            problems.append(f"{family.name}: no series")
        problems += [f"{s.name}{s.labels}: {s.value}" for s in counts if s.value != 0]
    return problems
