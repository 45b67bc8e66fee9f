"""The deployment material in infra/ and docker-compose.yml: validated by the real tools
(docker-compose, promtool) and checked against the code it deploys (settings, topics, the
broker version, the metrics the services export)."""

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from schemas.topics import TOPICS
from services.judge import app as judge_app
from services.learner import app as learner_app
from services.router import app as router_app
from services.runtime.broker import KAFKA_VERSION
from services.runtime.settings import Settings
from services.worker import app as worker_app
from tests.support_metrics import JUDGE_MODEL_FAMILIES, not_started_at_zero

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "infra" / "Dockerfile"
PROMETHEUS = ROOT / "infra" / "prometheus"
GRAFANA = ROOT / "infra" / "grafana"
DASHBOARD = GRAFANA / "dashboards" / "agensbus.json"

#: Every metric the services export, with its type: the alerts and the dashboard may read
#: only these, and a test compares the list with the services' registries both ways.
#: Counters and gauges are named as their /metrics samples are; a histogram by its base name
#: (queries read its _bucket, _sum and _count).
EXPECTED_METRICS: dict[str, str] = {
    # router
    "agensbus_router_decisions_total": "counter",
    "agensbus_router_trajectories_started_total": "counter",
    "agensbus_router_trajectories_completed_total": "counter",
    "agensbus_router_trajectories_in_flight": "gauge",
    "agensbus_router_duplicate_outcomes_total": "counter",
    "agensbus_router_step_timeouts_total": "counter",
    "agensbus_router_late_outcomes_total": "counter",
    "agensbus_router_steps_waiting": "gauge",
    "agensbus_router_policy_version": "gauge",
    "agensbus_router_policy_timestamp_seconds": "gauge",
    "agensbus_router_policy_refused_total": "counter",
    "agensbus_router_decision_latency_seconds": "histogram",
    "agensbus_router_min_propensity": "gauge",
    "agensbus_router_breaker_state": "gauge",
    "agensbus_router_breaker_transitions_total": "counter",
    "agensbus_router_governance_halts_total": "counter",
    # worker and judge roles
    "agensbus_worker_cell_executions_total": "counter",
    "agensbus_worker_cell_latency_seconds": "histogram",
    "agensbus_worker_tokens_total": "counter",
    "agensbus_worker_cost_usd_total": "counter",
    "agensbus_worker_retries_total": "counter",
    "agensbus_worker_failures_total": "counter",
    "agensbus_worker_in_flight": "gauge",
    "agensbus_judge_groups_scored_total": "counter",
    "agensbus_judge_disagreement": "histogram",
    "agensbus_judge_unscored_total": "counter",
    "agensbus_judge_requests_total": "counter",
    "agensbus_judge_failures_total": "counter",
    "agensbus_judge_abstentions_total": "counter",
    "agensbus_judge_tokens_total": "counter",
    "agensbus_judge_cost_usd_total": "counter",
    "agensbus_judge_latency_seconds": "histogram",
    # learner
    "agensbus_learner_trajectories_consumed_total": "counter",
    "agensbus_learner_rewards_consumed_total": "counter",
    "agensbus_learner_backups_total": "counter",
    "agensbus_learner_duplicates_total": "counter",
    "agensbus_learner_foreign_events_total": "counter",
    "agensbus_learner_joins_expired_total": "counter",
    "agensbus_learner_waiting_joins": "gauge",
    "agensbus_learner_reward": "histogram",
    "agensbus_learner_snapshots_published_total": "counter",
    "agensbus_learner_snapshot_failures_total": "counter",
    "agensbus_learner_snapshot_bytes": "gauge",
    "agensbus_learner_snapshot_seconds": "histogram",
    "agensbus_learner_policy_version": "gauge",
    "agensbus_learner_policy_nodes": "gauge",
    "agensbus_learner_policy_edges": "gauge",
    "agensbus_learner_shards": "gauge",
    "agensbus_learner_gate_decisions_total": "counter",
    "agensbus_router_snapshots_refused_total": "counter",
    "agensbus_router_gate_figure": "gauge",
    # every service (the Service shell), told apart by their `service` label
    "agensbus_poison_records_total": "counter",
    "agensbus_payloads_total": "counter",
    "agensbus_dead_letters_total": "counter",
    "agensbus_build_info": "gauge",
    "agensbus_consumer_lag": "gauge",
}

#: Series Prometheus makes itself.
PROMETHEUS_SERIES = {"up"}

#: The compose services that run agensbus, and the command each runs.
AGENSBUS_SERVICES = {
    "router": ["agensbus", "router"],
    "worker-1": ["agensbus", "worker"],
    "worker-2": ["agensbus", "worker"],
    "judge": ["agensbus", "worker", "--role", "judge"],
    "learner": ["agensbus", "learner"],
}

#: The panels the dashboard must have (title prefixes would hide a renamed panel, so exact).
DASHBOARD_PANELS = {
    "Decisions/s by action kind and reason",
    "Decision latency p50 / p99",
    "Trajectories/s by termination",
    "Mean reward by task class",
    "Tokens per trajectory",
    "Skip and exploration rate",
    "Policy version",
    "Policy age",
    "Consumer lag by service and topic",
    "Dead letters/s by service and reason",
    "Cell latency p50 / p99 by cell",
    "Cell failure rate by model",
    "Circuit breaker state by model",
    "Cost (USD/h) by model",
    "Failures/s by kind",
    "Minimum propensity",
    "Refused snapshots by reason",
}
#: The dashboard's variables: the datasource (an import input, a selector once provisioned)
#: and the label filters its queries take.
DASHBOARD_VARIABLES = {
    "DS_PROMETHEUS": "datasource",
    "tenant": "query",
    "instance": "query",
    "model": "query",
}
DATASOURCE = {"type": "prometheus", "uid": "${DS_PROMETHEUS}"}


def tool(name: str, package: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(
            f"{name} is not installed: install Debian's {package} package "
            f"(apt-get install -y {package}); .ci/run installs it when missing"
        )
    return path


def run(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=120)


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    document: dict[str, Any] = load_yaml(COMPOSE)
    return document


# --- PromQL metric names ------------------------------------------------------------------

_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_WORDS = {"and", "or", "unless", "bool", "offset", "by", "without", "on", "ignoring", "inf"}


def metric_names(expr: str) -> set[str]:
    """Series names an expression selects: identifiers that are not functions, keywords,
    label names, label values or range durations."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    text = re.sub(r"\{[^}]*\}", "", text)
    text = re.sub(r"\[[^\]]*\]", "", text)
    text = _GROUPING.sub("", text)
    names = set()
    for match in re.finditer(r"(?<![\w:.])[A-Za-z_:][\w:]*", text):
        name = match.group()
        is_call = text[match.end() :].lstrip().startswith("(")
        if not is_call and name.lower() not in _WORDS:
            names.add(name)
    return names


def unknown_series(names: set[str]) -> set[str]:
    known = set(PROMETHEUS_SERIES)
    for name, kind in EXPECTED_METRICS.items():
        if kind == "histogram":
            known |= {f"{name}_bucket", f"{name}_sum", f"{name}_count"}
        else:
            known.add(name)
    return names - known


def test_metric_names_parser_sees_metrics_only() -> None:
    expr = (
        'sum by (le, cell) (rate(a_seconds_bucket{status="failed", x=~"b.*"}[$__rate_interval]))'
        " / on (instance) group_left (tenant) b_total offset 5m"
        " and (sum(c) or vector(0)) == 0 > bool time() - d"
    )
    assert metric_names(expr) == {"a_seconds_bucket", "b_total", "c", "d"}


def test_unknown_series_flags_a_bare_histogram_and_a_typo() -> None:
    assert unknown_series({"agensbus_learner_reward_sum", "up"}) == set()
    assert unknown_series({"agensbus_learner_reward", "agensbus_router_decision_total"}) == {
        "agensbus_learner_reward",
        "agensbus_router_decision_total",
    }


def scrapes() -> dict[str, str]:
    """Service -> its /metrics text just after it was built (building connects to nothing)."""
    settings = Settings(kafka_bootstrap="127.0.0.1:9")
    services = [
        router_app.build(settings),
        worker_app.build(settings),
        judge_app.build(settings),
        learner_app.build(settings),
    ]
    return {s.name: generate_latest(s.registry).decode() for s in services}


def exported_metrics() -> dict[str, str]:
    """Name -> type of every metric family the four services register, as /metrics declares
    them (``# TYPE`` lines)."""
    exported = {}
    for text in scrapes().values():
        for line in text.splitlines():
            if line.startswith("# TYPE "):
                _, _, name, kind = line.split(" ")
                exported[name] = kind
    return exported


def test_the_services_export_exactly_the_expected_metrics() -> None:
    # So every metric a panel or a rule reads (checked against EXPECTED_METRICS below) is one
    # the services export, and a metric added to a service is listed (and documented).
    assert exported_metrics() == EXPECTED_METRICS


def test_every_dead_letter_reason_the_code_names_starts_at_0() -> None:
    # A reason no role declares would have no series until its first letter.
    named = {
        reason
        for path in (ROOT / "services").rglob("*.py")
        for reason in re.findall(
            r'\b(?:Rejected|Unexecutable|Poison)\(\s*"(\w+)"', path.read_text()
        )
    }
    started = {
        sample.labels["reason"]
        for text in scrapes().values()
        for family in text_string_to_metric_families(text)
        if family.name == "agensbus_dead_letters"
        for sample in family.samples
    }
    assert len(named) > 10
    assert named <= started


def test_every_counter_and_histogram_has_its_series_at_0_before_any_event() -> None:
    # rate() and increase() see the first event only from a series that existed before it.
    for name, text in scrapes().items():
        assert not_started_at_zero(text, JUDGE_MODEL_FAMILIES) == [], name
    shell = scrapes()["router"]
    assert 'agensbus_dead_letters_total{reason="invalid_task",service="router"} 0.0' in shell
    assert 'agensbus_build_info{service="router",version=' in shell


# --- docker-compose.yml ---------------------------------------------------------------------


def test_compose_file_is_valid() -> None:
    result = run(tool("docker-compose", "docker-compose"), "-f", str(COMPOSE), "config", "-q")
    assert result.returncode == 0, result.stderr


def test_compose_runs_every_service_with_its_command(compose: dict[str, Any]) -> None:
    services = compose["services"]
    running = {name: s["command"] for name, s in services.items() if "agensbus" in s["image"]}
    assert running == AGENSBUS_SERVICES


def test_compose_environment_names_only_real_settings(compose: dict[str, Any]) -> None:
    fields = set(Settings.model_fields)
    for name in AGENSBUS_SERVICES:
        environment: dict[str, str] = compose["services"][name]["environment"]
        settings = {}
        for key, value in environment.items():
            assert key.startswith("AGENSBUS_"), f"{name}: {key} is not an AGENSBUS_ setting"
            field = key.removeprefix("AGENSBUS_").lower()
            assert field in fields, f"{name}: {key} names no Settings field"
            # ${VAR:-default} is what compose interpolates when the variable is unset
            settings[field] = re.sub(r"\$\{[A-Z_]+:-([^}]*)\}", r"\1", str(value))
        parsed = Settings.model_validate(settings)
        assert (parsed.kafka_bootstrap, parsed.http_host, parsed.http_port) == (
            "kafka:9092",
            "0.0.0.0",
            9400,
        )


def test_compose_services_wait_for_kafka_and_topics_and_are_probed(
    compose: dict[str, Any],
) -> None:
    for name in AGENSBUS_SERVICES:
        service = compose["services"][name]
        assert service["depends_on"] == {
            "kafka": {"condition": "service_healthy"},
            "topics": {"condition": "service_completed_successfully"},
        }, name
        probe = " ".join(service["healthcheck"]["test"])
        assert "http://127.0.0.1:9400/readyz" in probe, name
    assert "healthcheck" in compose["services"]["kafka"]


def test_compose_kafka_is_the_embedded_brokers_version_in_kraft(compose: dict[str, Any]) -> None:
    kafka = compose["services"]["kafka"]
    assert kafka["image"] == f"apache/kafka:{KAFKA_VERSION}"
    assert compose["services"]["topics"]["image"] == kafka["image"]
    environment = kafka["environment"]
    assert environment["KAFKA_PROCESS_ROLES"] == "broker,controller"
    assert environment["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "false"
    assert "PLAINTEXT://kafka:9092" in environment["KAFKA_ADVERTISED_LISTENERS"]


def test_compose_topic_job_creates_the_runtime_topics(compose: dict[str, Any]) -> None:
    script = "\n".join(compose["services"]["topics"]["command"])
    created: dict[str, tuple[int, dict[str, str]]] = {}
    for line in script.splitlines():
        if not line.startswith("create --topic"):
            continue
        topic = re.search(r"--topic (\S+)", line)
        partitions = re.search(r"--partitions (\d+)", line)
        assert topic and partitions, line
        configs = dict(c.split("=", 1) for c in re.findall(r"--config (\S+)", line))
        created[topic.group(1)] = (int(partitions.group(1)), configs)
    defaults = Settings()
    assert created == {
        defaults.topic(spec.name): (spec.partitions or defaults.topic_partitions, spec.configs)
        for spec in TOPICS
    }


# --- Prometheus -------------------------------------------------------------------------------


def test_prometheus_config_is_valid() -> None:
    promtool = tool("promtool", "prometheus")
    result = run(promtool, "check", "config", str(PROMETHEUS / "prometheus.yml"))
    assert result.returncode == 0, result.stdout + result.stderr


def test_alert_rules_are_valid() -> None:
    promtool = tool("promtool", "prometheus")
    result = run(promtool, "check", "rules", str(PROMETHEUS / "alerts.yml"))
    assert result.returncode == 0, result.stdout + result.stderr


def test_prometheus_scrapes_every_agensbus_service() -> None:
    config = load_yaml(PROMETHEUS / "prometheus.yml")
    assert config["rule_files"] == ["alerts.yml"]
    targets = {
        target: group["labels"]["service"]
        for job in config["scrape_configs"]
        for group in job["static_configs"]
        for target in group["targets"]
    }
    assert targets == {
        f"{name}:9400": command[-1] if "--role" in command else command[1]
        for name, command in AGENSBUS_SERVICES.items()
    }


def alert_rules() -> list[dict[str, Any]]:
    rules: list[dict[str, Any]] = [
        rule for group in load_yaml(PROMETHEUS / "alerts.yml")["groups"] for rule in group["rules"]
    ]
    return rules


def test_alerts_have_duration_severity_and_text() -> None:
    rules = alert_rules()
    assert len(rules) >= 6
    for rule in rules:
        assert rule.get("for"), rule["alert"]
        assert rule["labels"]["severity"] in {"critical", "warning"}, rule["alert"]
        assert rule["annotations"]["summary"] and rule["annotations"]["description"]


def test_alerts_read_only_expected_metrics() -> None:
    for rule in alert_rules():
        assert unknown_series(metric_names(rule["expr"])) == set(), rule["alert"]


def series(name: str, values: str, **labels: str) -> dict[str, str]:
    """An input series for `promtool test rules`, scraped by the agensbus job."""
    matchers = ", ".join(f'{k}="{v}"' for k, v in {"job": "agensbus", **labels}.items())
    return {"series": f"{name}{{{matchers}}}", "values": values}


ROUTER = {"service": "router", "instance": "router:9400"}
WORKER = {"service": "worker", "instance": "worker-1:9400", "cell": "solver"}
LEARNER = {"service": "learner", "instance": "learner:9400"}
JUDGE = {"service": "judge", "instance": "judge:9400"}

# (alert, input series at one sample a minute, evaluated at, the alerts' labels expected then)
RULE_CASES: dict[str, tuple[str, list[dict[str, str]], str, list[dict[str, str]]]] = {
    "the gate refuses snapshot after snapshot": (
        "AgensbusSnapshotsRefused",
        [
            series(
                "agensbus_router_snapshots_refused_total",
                "0+1x90",
                reason="below_acting_policy",
                **ROUTER,
            )
        ],
        "80m",
        [{"severity": "warning", "reason": "below_acting_policy", "instance": "router:9400"}],
    ),
    "the gate refused one snapshot": (
        "AgensbusSnapshotsRefused",
        [
            series(
                "agensbus_router_snapshots_refused_total",
                "0 0 1 1x87",
                reason="too_few_decisions",
                **ROUTER,
            )
        ],
        "80m",
        [],
    ),
    "tasks wait, no decision ever": (
        "AgensbusRouterNoDecisions",
        [series("agensbus_consumer_lag", "5+5x40", topic="agensbus.tasks", **ROUTER)],
        "20m",
        [{"severity": "critical"}],
    ),
    "tasks wait, decisions flow": (
        "AgensbusRouterNoDecisions",
        [
            series("agensbus_consumer_lag", "5+5x40", topic="agensbus.tasks", **ROUTER),
            series(
                "agensbus_router_decisions_total",
                "0+10x40",
                action_kind="invoke",
                reason="rule_based_prior",
                **ROUTER,
            ),
        ],
        "20m",
        [],
    ),
    "trajectories start, none ends": (
        "AgensbusTrajectoriesStalled",
        [series("agensbus_router_trajectories_started_total", "0+3x60", **ROUTER)],
        "40m",
        [{"severity": "warning"}],
    ),
    "one model fails 60%, the other 10%": (
        "AgensbusWorkerFailureRate",
        [
            series(
                "agensbus_worker_cell_executions_total",
                "0+6x40",
                model="bad",
                status="failed",
                **WORKER,
            ),
            series(
                "agensbus_worker_cell_executions_total",
                "0+4x40",
                model="bad",
                status="succeeded",
                **WORKER,
            ),
            series(
                "agensbus_worker_cell_executions_total",
                "0+1x40",
                model="good",
                status="failed",
                **WORKER,
            ),
            series(
                "agensbus_worker_cell_executions_total",
                "0+9x40",
                model="good",
                status="succeeded",
                **WORKER,
            ),
        ],
        "30m",
        [{"severity": "warning", "model": "bad"}],
    ),
    "a model stays withheld": (
        "AgensbusModelWithheld",
        [
            series("agensbus_router_breaker_state", "0x5 2 2 1 2x10 1 2x20", model="bad", **ROUTER),
            series("agensbus_router_breaker_state", "0x40", model="good", **ROUTER),
        ],
        "30m",
        [{"severity": "warning", "model": "bad"}],
    ),
    "a model withheld for one cool-down": (
        "AgensbusModelWithheld",
        [series("agensbus_router_breaker_state", "0x5 2 1 0x40", model="bad", **ROUTER)],
        "30m",
        [],
    ),
    "learner dead-letters steadily": (
        "AgensbusDeadLetters",
        [series("agensbus_dead_letters_total", "0+1x40", reason="schema_invalid", **LEARNER)],
        "30m",
        [{"severity": "warning", "service": "learner", "reason": "schema_invalid"}],
    ),
    "learner reads, publishes nothing": (
        "AgensbusPolicySnapshotsStalled",
        [
            series("agensbus_learner_trajectories_consumed_total", "0+5x40", **LEARNER),
            series("agensbus_learner_snapshots_published_total", "3x40", **LEARNER),
        ],
        "30m",
        [{"severity": "warning", "job": "agensbus", **LEARNER}],
    ),
    "learner lag grows": (
        "AgensbusLearnerLagGrowing",
        [
            series(
                "agensbus_consumer_lag",
                "0+20x40",
                topic="agensbus.rewards",
                partition="0",
                **LEARNER,
            )
        ],
        "30m",
        [{"severity": "warning", "service": "learner", "topic": "agensbus.rewards"}],
    ),
    "a router partition makes no progress while tasks arrive": (
        "AgensbusPartitionStuck",
        [
            series(
                "agensbus_consumer_lag",
                "0x5 40+10x40",
                topic="agensbus.tasks",
                partition="1",
                **ROUTER,
            )
        ],
        "30m",
        [
            {
                "severity": "critical",
                "job": "agensbus",
                "topic": "agensbus.tasks",
                "partition": "1",
                **ROUTER,
            }
        ],
    ),
    "a busy partition that drains now and then": (
        "AgensbusPartitionStuck",
        [
            series(
                "agensbus_consumer_lag",
                "50 80 20 90 60 30 100 70 10 " * 5,
                topic="agensbus.decisions",
                partition="0",
                **WORKER,
            )
        ],
        "30m",
        [],
    ),
    "router decides on an old policy": (
        "AgensbusRouterPolicyStale",
        [
            series("agensbus_router_policy_timestamp_seconds", "0x60", tenant="default", **ROUTER),
            series(
                "agensbus_router_decisions_total",
                "0+10x60",
                action_kind="invoke",
                reason="graph_recommendation",
                **ROUTER,
            ),
        ],
        "50m",
        [{"severity": "warning", "job": "agensbus", "tenant": "default", **ROUTER}],
    ),
    "judge models leave trajectories unscored": (
        "AgensbusJudgeUnscored",
        [series("agensbus_judge_unscored_total", "0+2x40", **JUDGE)],
        "30m",
        [{"severity": "warning", **JUDGE}],
    ),
    "judges that score everything": (
        "AgensbusJudgeUnscored",
        [series("agensbus_judge_unscored_total", "0x40", **JUDGE)],
        "30m",
        [],
    ),
    "fixed pipeline ignores the policy": (
        "AgensbusRouterPolicyStale",
        [
            series("agensbus_router_policy_timestamp_seconds", "0x60", tenant="default", **ROUTER),
            series(
                "agensbus_router_decisions_total",
                "0+10x60",
                action_kind="invoke",
                reason="fixed_pipeline",
                **ROUTER,
            ),
        ],
        "50m",
        [],
    ),
}


@pytest.mark.parametrize("case", RULE_CASES)
def test_alert_rule_fires_on_the_condition_it_names(case: str, tmp_path: Path) -> None:
    promtool = tool("promtool", "prometheus")
    alert, inputs, eval_time, expected = RULE_CASES[case]
    # Annotations are dropped: promtool would compare their wording, which is not the point.
    document = load_yaml(PROMETHEUS / "alerts.yml")
    for group in document["groups"]:
        for rule in group["rules"]:
            rule.pop("annotations")
    (tmp_path / "alerts.yml").write_text(yaml.safe_dump(document))
    test = {
        "interval": "1m",
        "input_series": inputs,
        "alert_rule_test": [
            {
                "eval_time": eval_time,
                "alertname": alert,
                "exp_alerts": [{"exp_labels": labels} for labels in expected],
            }
        ],
    }
    cases = {"rule_files": ["alerts.yml"], "tests": [test]}
    (tmp_path / "cases.yml").write_text(yaml.safe_dump(cases))
    result = run(promtool, "test", "rules", "cases.yml", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr


# --- Grafana ----------------------------------------------------------------------------------


def dashboard_panels() -> list[dict[str, Any]]:
    panels: list[dict[str, Any]] = [
        p for p in json.loads(DASHBOARD.read_text())["panels"] if p["type"] != "row"
    ]
    return panels


def test_grafana_provisions_the_prometheus_datasource_and_the_dashboards(
    compose: dict[str, Any],
) -> None:
    provisioning = GRAFANA / "provisioning"
    (datasource,) = load_yaml(provisioning / "datasources" / "prometheus.yml")["datasources"]
    assert (datasource["uid"], datasource["type"]) == ("prometheus", "prometheus")
    assert datasource["url"] == "http://prometheus:9090"
    (provider,) = load_yaml(provisioning / "dashboards" / "agensbus.yml")["providers"]
    mounts = dict(v.split(":")[:2] for v in compose["services"]["grafana"]["volumes"])
    assert mounts["./infra/grafana/dashboards"] == provider["options"]["path"]
    assert mounts["./infra/grafana/provisioning"] == "/etc/grafana/provisioning"
    assert (
        compose["services"]["prometheus"]["volumes"][0] == "./infra/prometheus:/etc/prometheus:ro"
    )


def test_dashboard_has_the_panels_on_the_datasource_input() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    assert (dashboard["uid"], dashboard["title"]) == ("agensbus", "agensbus")
    (wanted,) = dashboard["__inputs"]
    assert (wanted["name"], wanted["type"], wanted["pluginId"]) == (
        "DS_PROMETHEUS",
        "datasource",
        "prometheus",
    )
    variables = dashboard["templating"]["list"]
    assert {v["name"]: v["type"] for v in variables} == DASHBOARD_VARIABLES
    for variable in variables:
        if variable["type"] == "query":
            assert variable["datasource"] == DATASOURCE, variable["name"]
    panels = dashboard_panels()
    assert {p["title"] for p in panels} >= DASHBOARD_PANELS
    for panel in panels:
        assert panel["targets"], panel["title"]
        for target in [panel, *panel["targets"]]:
            assert target["datasource"] == DATASOURCE, panel["title"]


def test_dashboard_queries_take_the_label_variables() -> None:
    queries = [t["expr"] for p in dashboard_panels() for t in p["targets"]]
    for variable in ("tenant", "instance", "model"):
        assert any(f'=~"${variable}"' in q for q in queries), variable


def dashboard_variable_selectors() -> list[str]:
    """The series selector of each query variable (``label_values(SELECTOR, label)``)."""
    selectors = []
    for variable in json.loads(DASHBOARD.read_text())["templating"]["list"]:
        if variable["type"] == "query":
            match = re.fullmatch(r"label_values\((.*), \w+\)", variable["query"]["query"])
            assert match, variable["name"]
            selectors.append(match.group(1))
    return selectors


def test_dashboard_reads_only_expected_metrics() -> None:
    for panel in dashboard_panels():
        for target in panel["targets"]:
            assert unknown_series(metric_names(target["expr"])) == set(), panel["title"]
    for selector in dashboard_variable_selectors():
        assert unknown_series(metric_names(selector)) == set(), selector


def test_dashboard_queries_parse(tmp_path: Path) -> None:
    # promtool has no parse-only command; a recording rule per query gets the same parser.
    promtool = tool("promtool", "prometheus")
    rules = [
        {"record": f"panel_{panel['id']}_{target['refId']}", "expr": target["expr"]}
        for panel in dashboard_panels()
        for target in panel["targets"]
    ]
    text = yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]})
    (tmp_path / "queries.yml").write_text(text.replace("$__rate_interval", "1m"))
    result = run(promtool, "check", "rules", "queries.yml", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr


# --- Dockerfile -------------------------------------------------------------------------------


def test_dockerfile_installs_the_package_and_runs_unprivileged() -> None:
    lines = [line.strip() for line in DOCKERFILE.read_text().splitlines()]
    assert any(re.match(r"FROM python:3\.11", line) for line in lines)
    assert any(re.match(r"RUN pip install .*'/src\[openai\]'", line) for line in lines)
    users = [line.split()[1] for line in lines if line.startswith("USER ")]
    assert users and users[-1] not in {"root", "0"}
    assert "EXPOSE 9400" in lines
    healthcheck = DOCKERFILE.read_text().split("HEALTHCHECK", 1)[1]
    assert "urllib.request" in healthcheck and "/healthz" in healthcheck


def test_dockerignore_keeps_tests_and_caches_out_but_not_the_sources() -> None:
    ignored = {line for line in (ROOT / ".dockerignore").read_text().splitlines() if line}
    assert {"tests", ".git", "**/__pycache__", ".pytest_cache", "reports"} <= ignored
    copied = re.findall(r"^COPY (.+) /src", DOCKERFILE.read_text(), re.MULTILINE)
    sources = {path for paths in copied for path in paths.split()}
    assert sources == {"pyproject.toml", "README.md", "constraints.txt", "schemas", "services"}
    assert not sources & ignored


def test_the_image_installs_from_the_lock_file_only_what_the_services_run() -> None:
    # The one install line: pinned by constraints.txt (copied into the image), and with no
    # extra beyond openai (reports, fallback and dev serve no service).
    [install] = re.findall(r"^RUN pip install (.+)$", DOCKERFILE.read_text(), re.MULTILINE)
    assert re.search(r"(?:^| )(?:-c|--constraint) /src/constraints\.txt ", install), install
    assert re.findall(r"'/src\[([^\]]*)\]'", install) == ["openai"]
    assert (ROOT / "constraints.txt").is_file()
