"""Service configuration: ``AGENSBUS_*`` environment variables, each also a command flag.

One flat pydantic-settings model holds every knob; :func:`settings_options` turns its fields
into click options so the flags and the environment can never disagree.
"""

from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal, TypeVar

import click
from pydantic import Field, SecretStr, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from services.policy.arms import deployed_arm
from services.runtime.plugins import BACKENDS, JUDGES, unknown_plugin

F = TypeVar("F", bound=Callable[..., Any])


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="AGENSBUS_", extra="forbid")

    # --- Kafka --------------------------------------------------------------------------
    kafka_bootstrap: str | None = Field(
        default=None,
        description="Kafka bootstrap servers (host:port,...). Unset: commands that need a "
        "broker start an embedded one.",
    )
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = Field(
        default="PLAINTEXT", description="Security protocol of the Kafka connection."
    )
    kafka_sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] = Field(
        default="PLAIN", description="SASL mechanism when the protocol is SASL_*."
    )
    kafka_sasl_username: str | None = Field(default=None, description="SASL user name.")
    kafka_sasl_password: SecretStr | None = Field(
        default=None, description="SASL password (never logged)."
    )
    kafka_ssl_cafile: Path | None = Field(default=None, description="CA bundle for TLS.")
    kafka_ssl_certfile: Path | None = Field(default=None, description="Client certificate.")
    kafka_ssl_keyfile: Path | None = Field(default=None, description="Client private key.")
    kafka_fetch_max_wait_ms: int = Field(
        default=500,
        ge=1,
        le=60_000,
        description="Longest a consumer's fetch waits for records (the fallback broker "
        "answers only when it expires: agensbus up and demo use 20 ms on it).",
    )
    topic_prefix: str = Field(default="agensbus.", description="Prefix of every topic name.")
    topic_partitions: int = Field(
        default=3, ge=1, le=1024, description="Partitions of the topics this project creates."
    )
    kafka_replication: int = Field(
        default=3,
        ge=1,
        le=16,
        description="Replication factor of created topics; a cluster with fewer brokers gets "
        "one copy per broker, with a warning (the embedded broker: 1).",
    )
    kafka_min_insync_replicas: int = Field(
        default=2,
        ge=1,
        le=16,
        description="min.insync.replicas of created topics: copies a write needs before "
        "it is acknowledged (at most the replication factor).",
    )
    kafka_idempotence: bool = Field(
        default=False,
        description="Idempotent producers, so that a retried write is stored once. Off by "
        "default: aiokafka does not roll a partition's sequence number back when the broker "
        "refuses a batch (a record over the topic's max.message.bytes), and every later write "
        "to that partition then fails with OutOfOrderSequenceNumber. Consumers deduplicate "
        "anyway, and producers wait for every in-sync replica either way.",
    )
    tenant: str = Field(default="default", description="Tenant of the events this process emits.")

    graceful_timeout_s: float = Field(
        default=30.0,
        ge=0.0,
        le=3600.0,
        description="On SIGTERM, how long in-flight work may take to finish before exit.",
    )

    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        default="INFO", description="Log level of the service's JSON logs."
    )
    otel_endpoint: str = Field(
        default="",
        description="OTLP/HTTP collector base URL that spans are exported to, e.g. "
        "http://localhost:4318 (needs the agensbus[tracing] extra). Empty: the standard "
        "OTEL_EXPORTER_OTLP_ENDPOINT when set, else no tracing.",
    )

    # --- service endpoints ---------------------------------------------------------------
    http_host: str = Field(default="127.0.0.1", description="Address of /metrics and health.")
    http_port: int = Field(
        default=9400, ge=0, le=65535, description="Port of /metrics, /healthz, /readyz (0: any)."
    )

    # --- pipeline ------------------------------------------------------------------------
    pipeline: str | None = Field(
        default=None,
        description="The pipeline the router, workers, judge and learner run (a shipped "
        "name, e.g. paper, or a YAML file; docs/pipeline.md). Unset: the one the scenario "
        "names, else paper.",
    )

    # --- simulation ----------------------------------------------------------------------
    scenario: str = Field(
        default="security-advisories",
        description="Scenario (shipped name or YAML file) of the simulated backend and judge.",
    )
    seed: int = Field(default=0, description="Seed of the simulated world and judge.")

    # --- router -------------------------------------------------------------------------
    router_group: str = Field(default="agensbus-router", description="Consumer group of routers.")
    tenants: str = Field(
        default="default",
        description="Comma-separated tenants this deployment serves; events naming another "
        "tenant go to the dead-letter topic.",
    )
    policy_arm: str = Field(
        default="agensbus",
        description="The policy arm the router routes by and the learner learns as (its "
        "selection, fold, skips and reward): agensbus (recommended: learns, with the fixed "
        "pipeline's quality as a floor per class), paper (the paper's rules exactly), fixed, "
        "noskip, agensbus-free, agensbus-lean, or ARM+SWITCH[+SWITCH...] as `agensbus bench "
        "learning --arms` takes them.",
    )
    gate_enabled: bool = Field(
        default=False,
        description="The off-policy gate: a router adopts a learner's snapshot only when "
        "the doubly robust estimate of its value, on the trajectories the acting policy "
        "logged, is not below the acting policy's by more than the tolerance "
        "(docs/learning.md). Needs an arm that logs propensities below 1, e.g. "
        "agensbus+explore.",
    )
    gate_tolerance: float = Field(
        default=0.02,
        ge=0.0,
        le=1.0,
        description="Gate: how far the lower end of a snapshot's 95% interval may lie below "
        "the acting policy's mean reward.",
    )
    gate_min_trajectories: int = Field(
        default=100,
        ge=2,
        description="Gate: logged trajectories of the acting policy needed before a snapshot "
        "can be judged (fewer: refused as too_few_decisions).",
    )
    gate_window: int = Field(
        default=500,
        ge=2,
        le=100_000,
        description="Gate: the most recent logged trajectories the learner estimates on.",
    )
    max_steps: int | None = Field(
        default=None,
        ge=1,
        le=1000,
        description="Step budget of a trajectory whose task names none (unset: the "
        "pipeline's, 24 unless it says otherwise).",
    )
    max_tokens: int | None = Field(
        default=None,
        ge=1,
        description="Token budget of a trajectory whose task names none (unset: the "
        "pipeline's, 60000 unless it says otherwise).",
    )
    dedupe_window: int = Field(
        default=200_000,
        ge=1_000,
        description="How many recent (trajectory, step) or trajectory ids a consumer "
        "remembers to drop duplicates.",
    )

    step_timeout_s: float = Field(
        default=300.0,
        ge=0.0,
        le=86_400.0,
        description="How long an invoke may wait for its StepOutcome (from the decision's "
        "produced_at) before the router records it failed with kind timeout (0: never).",
    )
    step_timeout_replay_s: float = Field(
        default=1_800.0,
        gt=0.0,
        le=604_800.0,
        description="How far back a starting router reads decisions and outcomes to recover "
        "the invokes still waiting (at least step_timeout_s).",
    )

    # --- governance (router) ---------------------------------------------------------------
    governance_halt_on: str = Field(
        default="auth,quota",
        description="Comma-separated failure kinds that halt a trajectory at once (empty: "
        "none); see docs/operations.md, Governance.",
    )
    governance_max_failures: int = Field(
        default=3,
        ge=0,
        le=1000,
        description="Failed steps a trajectory may have; the next one halts it.",
    )
    breaker_enabled: bool = Field(
        default=True, description="Circuit breaker per model: withhold models that keep failing."
    )
    breaker_window: int = Field(
        default=20,
        ge=1,
        le=10_000,
        description="Breaker: how many recent invokes of a model it judges.",
    )
    breaker_window_s: float = Field(
        default=300.0,
        gt=0.0,
        le=86_400.0,
        description="Breaker: invokes older than this leave the window.",
    )
    breaker_failure_rate: float = Field(
        default=0.5,
        gt=0.0,
        le=1.0,
        description="Breaker: the share of failed invokes in the window that opens it.",
    )
    breaker_min_calls: int = Field(
        default=5,
        ge=1,
        le=10_000,
        description="Breaker: invokes the window must hold before it may open.",
    )
    breaker_cooldown_s: float = Field(
        default=30.0,
        gt=0.0,
        le=86_400.0,
        description="Breaker: how long an open breaker withholds its model before a probe.",
    )

    # --- sizes and large payloads (docs/events.md, "Sizes") ----------------------------------
    limit_goal_bytes: int = Field(
        default=65_536,
        ge=1,
        le=524_288,
        description="Largest task goal admitted, in UTF-8 bytes; a larger task is "
        "dead-lettered by the router.",
    )
    limit_task_bytes: int = Field(
        default=262_144,
        ge=1,
        le=524_288,
        description="Largest TaskSubmitted admitted, in bytes (goal, constraints, metadata).",
    )
    limit_field_bytes: int = Field(
        default=65_536,
        ge=1,
        le=524_288,
        description="Largest handoff field or evidence item carried inline, in UTF-8 bytes.",
    )
    limit_state_bytes: int = Field(
        default=655_360,
        ge=65_536,
        le=786_432,
        description="Largest trajectory state, in JSON bytes; a step whose output would "
        "grow it past this fails with failure kind oversize.",
    )
    payload_inline_bytes: int = Field(
        default=16_384,
        ge=1,
        le=524_288,
        description="Handoff content above this many UTF-8 bytes is stored in the payload "
        "store and travels by reference.",
    )
    payload_dir: Path = Field(
        default=Path.home() / ".cache" / "agensbus" / "payloads",
        description="Payload store (a directory every worker and judge shares: a volume "
        "when they run on several hosts).",
    )
    payload_retention_s: float = Field(
        default=7 * 24 * 3600.0,
        ge=60.0,
        description="How long a stored payload outlives its last write (keep it at least "
        "the topics' retention.ms, so no event on a topic points at a deleted payload).",
    )

    # --- worker and judge ------------------------------------------------------------------
    worker_group: str = Field(default="agensbus-worker", description="Consumer group of workers.")
    judge_group: str = Field(default="agensbus-judge", description="Consumer group of judges.")
    worker_concurrency: int = Field(
        default=16, ge=1, le=4096, description="Decisions a worker executes at once."
    )
    worker_cells: str = Field(
        default="",
        description="Comma-separated cells whose invoke decisions this worker executes "
        "(empty: every cell); see docs/own-agents.md.",
    )
    worker_cells_except: str = Field(
        default="",
        description="Comma-separated cells this worker leaves to workers of your own "
        "(in a consumer group of their own); see docs/own-agents.md.",
    )
    worker_backend: str = Field(
        default="simulated",
        description="How cells are executed: an installed backend (simulated: the "
        "scenario's world; openai: an OpenAI-compatible chat-completions endpoint, see "
        "docs/models.md; packages add their own as agensbus.backends entry points).",
    )
    judge_scorer: str | None = Field(
        default=None,
        description="How the judge scores trajectories: an installed scorer (simulated, "
        "openai, or an agensbus.judges entry point). Unset: the one named like "
        "worker_backend.",
    )
    sim_time_scale: float = Field(
        default=0.0,
        ge=0.0,
        le=10.0,
        description="Simulated backend: sleep latency x this (0: no sleeping).",
    )
    judge_group_size: int = Field(
        default=4, ge=1, le=64, description="Trajectories the judge scores side by side."
    )
    judge_window_ms: int = Field(
        default=500,
        ge=0,
        le=600_000,
        description="How long the judge waits to fill a group before scoring what it has.",
    )
    judge_rollout_window_ms: int = Field(
        default=120_000,
        ge=0,
        le=3_600_000,
        description="How long the judge waits for every rollout of a task (submitted with "
        "rollouts > 1) before scoring those that arrived.",
    )
    judge_models: str = Field(
        default="",
        description="OpenAI backend: comma-separated models (of the model table or the "
        "one endpoint) that each score every group; the reward is their mean (empty: the "
        "default model).",
    )

    # --- openai backend ----------------------------------------------------------------------
    openai_base_url: str | None = Field(
        default=None,
        description="OpenAI backend: one chat-completions endpoint for every model not in "
        "the model table (e.g. https://api.openai.com/v1).",
    )
    openai_api_key: SecretStr | None = Field(
        default=None, description="OpenAI backend: API key of openai_base_url (never logged)."
    )
    openai_models_file: Path | None = Field(
        default=None, description="OpenAI backend: the model table (YAML or JSON)."
    )
    openai_default_model: str | None = Field(
        default=None,
        description="OpenAI backend: model of the variants that name none (unset: the "
        "table's default_model).",
    )
    openai_timeout_s: float = Field(
        default=60.0, gt=0.0, le=3600.0, description="OpenAI backend: timeout of one request."
    )
    openai_max_retries: int = Field(
        default=3,
        ge=0,
        le=10,
        description="OpenAI backend: retries of a request on 429, 5xx, timeouts, network errors.",
    )

    # --- skill cards and tools --------------------------------------------------------------
    skills_dir: Path | None = Field(
        default=None,
        description="Directory of extra SKILL.md cards; a card named like a shipped one "
        "replaces it (see agensbus skills list).",
    )
    documents_dir: Path | None = Field(
        default=None,
        description="OpenAI backend: documents (*.md, *.txt, recursively) the memory cell "
        "retrieves from with BM25 (unset: the model recalls).",
    )
    memory_top_k: int = Field(
        default=4, ge=1, le=16, description="Passages the memory cell retrieves per step."
    )
    web_search_provider: Literal["none", "searxng"] = Field(
        default="none",
        description="Search provider of web_search cells (none: their steps fail).",
    )
    web_search_url: str | None = Field(
        default=None, description="Root URL of the search provider (searxng: the instance)."
    )
    web_search_top_k: int = Field(
        default=5, ge=1, le=16, description="Search results a web_search step reads."
    )

    # --- learner ---------------------------------------------------------------------------
    learner_group: str = Field(default="agensbus-learner", description="Consumer group.")
    learner_sharded: bool = Field(
        default=False,
        description="Learner replicas of the tenant share its input partitions in the "
        "consumer group, each partition learned and checkpointed as a shard of its own.",
    )
    snapshot_every: int = Field(
        default=25, ge=1, description="Publish a snapshot after this many backed-up trajectories."
    )
    snapshot_interval_s: float = Field(
        default=5.0, gt=0.0, description="...or after this many seconds with new backups."
    )
    snapshot_min_interval_s: float = Field(
        default=1.0,
        ge=0.0,
        description="Seconds at least between two snapshots of a shard that snapshot_every "
        "triggers: a learner draining a backlog learns instead of re-encoding its graph.",
    )
    snapshot_chunk_nodes: int = Field(
        default=20_000,
        ge=1,
        description="A snapshot of more nodes goes out in chunks of this many, by signature "
        "range, each a record of its own.",
    )
    reward_ttl_s: float = Field(
        default=900.0,
        gt=0.0,
        description="A trajectory or reward waiting longer than this for its partner expires.",
    )

    @property
    def tenant_list(self) -> tuple[str, ...]:
        return tuple(t.strip() for t in self.tenants.split(",") if t.strip())

    @property
    def judge_model_list(self) -> tuple[str, ...]:
        """The judge models, each once, in the order given."""
        return tuple(dict.fromkeys(m.strip() for m in self.judge_models.split(",") if m.strip()))

    @field_validator("policy_arm")
    @classmethod
    def _arm_is_deployable(cls, value: str) -> str:
        try:
            deployed_arm(value)
        except KeyError as error:
            raise ValueError(error.args[0]) from None
        return value

    @field_validator("worker_backend")
    @classmethod
    def _backend_is_installed(cls, value: str) -> str:
        problem = unknown_plugin(BACKENDS, value)
        if problem is not None:
            raise ValueError(problem)
        return value

    @field_validator("judge_scorer")
    @classmethod
    def _scorer_is_installed(cls, value: str | None) -> str | None:
        problem = None if value is None else unknown_plugin(JUDGES, value)
        if problem is not None:
            raise ValueError(problem)
        return value

    @property
    def judge_scorer_name(self) -> str:
        return self.judge_scorer or self.worker_backend

    @field_validator("governance_halt_on")
    @classmethod
    def _failure_kinds(cls, value: str) -> str:
        from services.policy.governance import parse_failure_kinds

        parse_failure_kinds(value)
        return value

    @field_validator("breaker_min_calls")
    @classmethod
    def _breaker_can_open(cls, value: int, info: ValidationInfo) -> int:
        window = info.data.get("breaker_window")
        if window is not None and value > window:
            raise ValueError(
                f"{value} exceeds breaker_window ({window}): the breaker could never open"
            )
        return value

    @field_validator("gate_window")
    @classmethod
    def _gate_can_judge(cls, value: int, info: ValidationInfo) -> int:
        least = info.data.get("gate_min_trajectories")
        if least is not None and value < least:
            raise ValueError(
                f"{value} is below gate_min_trajectories ({least}): the gate could never judge"
            )
        return value

    @field_validator("step_timeout_replay_s")
    @classmethod
    def _replay_covers_timeout(cls, value: float, info: ValidationInfo) -> float:
        timeout = info.data.get("step_timeout_s")
        if timeout is not None and value < timeout:
            raise ValueError(f"{value} is shorter than step_timeout_s ({timeout})")
        return value

    @field_validator("topic_prefix")
    @classmethod
    def _prefix_is_a_topic_name(cls, value: str) -> str:
        allowed = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-")
        if not set(value) <= allowed or len(value) > 100:
            raise ValueError("may hold only letters, digits, '.', '_' and '-' (at most 100)")
        return value

    def topic(self, name: str) -> str:
        return f"{self.topic_prefix}{name}"

    def kafka_client_options(self) -> dict[str, Any]:
        """Security options for aiokafka clients (producer, consumer, admin)."""
        options: dict[str, Any] = {"security_protocol": self.kafka_security_protocol}
        if self.kafka_security_protocol.startswith("SASL"):
            options["sasl_mechanism"] = self.kafka_sasl_mechanism
            options["sasl_plain_username"] = self.kafka_sasl_username
            options["sasl_plain_password"] = (
                self.kafka_sasl_password.get_secret_value() if self.kafka_sasl_password else None
            )
        if self.kafka_security_protocol.endswith("SSL"):
            from aiokafka.helpers import create_ssl_context

            options["ssl_context"] = create_ssl_context(
                cafile=str(self.kafka_ssl_cafile) if self.kafka_ssl_cafile else None,
                certfile=str(self.kafka_ssl_certfile) if self.kafka_ssl_certfile else None,
                keyfile=str(self.kafka_ssl_keyfile) if self.kafka_ssl_keyfile else None,
            )
        return options


def settings_options(fields: tuple[str, ...] | None = None) -> Callable[[F], F]:
    """Add one ``--flag`` per settings field (all of them, or ``fields``); a flag left out
    falls back to ``AGENSBUS_<FIELD>`` and then to the default shown in ``--help``."""

    def decorate(command: F) -> F:
        names = fields or tuple(Settings.model_fields)
        for name in reversed(names):
            info = Settings.model_fields[name]
            default = info.default
            shown = "unset" if default is None else default
            env = f"AGENSBUS_{name.upper()}"
            command = click.option(
                "--" + name.replace("_", "-"),
                name,
                default=None,
                help=f"{info.description} [env {env}; default: {shown}]",
            )(command)
        return command

    return decorate


def load_settings(flags: dict[str, Any]) -> Settings:
    """Settings from flags given on the command line, then the environment, then defaults."""
    return Settings(**{k: v for k, v in flags.items() if v is not None})
