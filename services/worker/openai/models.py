"""The model table: which endpoint, key, prices and limits each model name stands for.

A variant names a model (``solver.concise@strong``); the table maps that name to a provider
model at an endpoint. For the common case of one endpoint for every model, the settings'
``openai_base_url`` and ``openai_api_key`` are enough: names missing from the table are
then sent to that endpoint as they are.
"""

import json
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError

from services.runtime.settings import Settings

StructuredOutput = Literal["json_schema", "json_object"]
#: The request field that carries ``max_output_tokens``: OpenAI's reasoning models refuse
#: ``max_tokens``, while some older OpenAI-compatible servers know nothing else.
OutputLimitField = Literal["max_completion_tokens", "max_tokens"]

#: Where the one-endpoint key comes from, as readiness reports it.
SHORTCUT_KEY = "AGENSBUS_OPENAI_API_KEY"

#: Characters per token when guessing the size of a prompt against a context window.
CHARS_PER_TOKEN = 4


class ModelConfigError(ValueError):
    """The model table or the openai settings cannot serve the pool."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class _Fields(_Strict):
    """What an entry of the table may set; ``defaults`` holds the same fields."""

    base_url: str | None = Field(default=None, min_length=1)
    api_key_env: str | None = Field(default=None, min_length=1, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    price_in_per_1k: float | None = Field(default=None, ge=0.0)
    price_out_per_1k: float | None = Field(default=None, ge=0.0)
    context_window: int | None = Field(default=None, ge=256)
    max_output_tokens: int | None = Field(default=None, ge=1)
    output_limit_field: OutputLimitField | None = None
    timeout_s: float | None = Field(default=None, gt=0.0, le=3600.0)
    max_concurrency: int | None = Field(default=None, ge=1, le=4096)
    requests_per_minute: float | None = Field(default=None, gt=0.0)
    structured_output: StructuredOutput | None = None


class _Entry(_Fields):
    model: str | None = Field(default=None, min_length=1, description="the provider's model id")


class ModelFile(_Strict):
    default_model: str | None = None
    defaults: _Fields = Field(default_factory=_Fields)
    models: dict[str, _Entry] = Field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ModelSpec:
    """One model name, resolved: everything a call and its bill need."""

    name: str
    model: str
    base_url: str
    api_key: SecretStr | None
    key_source: str
    price_in_per_1k: float = 0.0
    price_out_per_1k: float = 0.0
    context_window: int = 128_000
    max_output_tokens: int | None = None
    output_limit_field: OutputLimitField = "max_completion_tokens"
    timeout_s: float = 60.0
    max_concurrency: int = 16
    requests_per_minute: float | None = None
    structured_output: StructuredOutput = "json_schema"

    def cost_usd(self, tokens_in: int, tokens_out: int) -> float:
        return (tokens_in * self.price_in_per_1k + tokens_out * self.price_out_per_1k) / 1000

    def fits(self, messages: Sequence[Mapping[str, str]]) -> bool:
        """Whether a prompt of these messages, guessed at ``CHARS_PER_TOKEN``, fits the
        context window: sending one that does not only buys a provider's 400."""
        characters = sum(len(message["content"]) for message in messages)
        return characters // CHARS_PER_TOKEN <= self.context_window


@dataclass(frozen=True)
class ModelTable:
    models: Mapping[str, ModelSpec]
    default: str | None

    def resolve(self, name: str | None) -> ModelSpec:
        """The model of a variant; ``None`` (a variant naming no model) is the default."""
        chosen = name or self.default
        if chosen is None:
            raise KeyError("the variant names no model and no default model is configured")
        try:
            return self.models[chosen]
        except KeyError:
            raise KeyError(f"model {chosen!r} is not configured") from None

    def endpoints(self) -> dict[tuple[str, str], ModelSpec]:
        """One model per (endpoint, key source): what readiness has to probe."""
        found: dict[tuple[str, str], ModelSpec] = {}
        for spec in self.models.values():
            found.setdefault((spec.base_url, spec.key_source), spec)
        return found


def read_model_file(path: Path) -> ModelFile:
    """The table in ``path`` (``.json``, else YAML); errors name the file."""
    try:
        text = path.read_text()
        raw = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
        return ModelFile.model_validate(raw or {})
    except OSError as error:
        raise ModelConfigError(f"{path}: cannot read the model table: {error}") from None
    except (json.JSONDecodeError, yaml.YAMLError) as error:
        raise ModelConfigError(f"{path}: not valid JSON/YAML: {error}") from None
    except ValidationError as error:
        raise ModelConfigError(f"{path}: invalid model table: {error}") from None


def load_models(
    settings: Settings, names: Iterable[str | None], env: Mapping[str, str] | None = None
) -> ModelTable:
    """Resolve every model name the pool uses (``None``: a variant naming no model).

    Each field comes from the model's entry, then the table's ``defaults``, then the
    one-endpoint settings. A missing key is not an error here: the worker starts and its
    readiness says which key is missing.
    """
    env = os.environ if env is None else env
    path = settings.openai_models_file
    table = read_model_file(path) if path is not None else ModelFile()
    where = str(path) if path is not None else "the openai settings"
    default = settings.openai_default_model or table.default_model
    wanted = {n for n in names if n is not None} | set(table.models)
    if None in set(names) or default is not None:
        if default is None:
            raise ModelConfigError(
                f"{where}: some variants name no model; set default_model in the table "
                "or AGENSBUS_OPENAI_DEFAULT_MODEL"
            )
        wanted.add(default)
    specs = {name: _resolve(name, table, settings, env, where) for name in sorted(wanted)}
    return ModelTable(specs, default)


def _resolve(
    name: str, table: ModelFile, settings: Settings, env: Mapping[str, str], where: str
) -> ModelSpec:
    entry = table.models.get(name, _Entry())
    given = {
        **table.defaults.model_dump(exclude_none=True),
        **entry.model_dump(exclude_none=True),
    }
    base_url = given.pop("base_url", None) or settings.openai_base_url
    if base_url is None:
        raise ModelConfigError(
            f"{where}: model {name!r} has no base_url (set it in the table or "
            "AGENSBUS_OPENAI_BASE_URL)"
        )
    key_env = given.pop("api_key_env", None)
    if key_env is not None:
        value = env.get(key_env)
        key, source = (SecretStr(value) if value else None), f"env {key_env}"
    else:
        key, source = settings.openai_api_key, SHORTCUT_KEY
    given.setdefault("timeout_s", settings.openai_timeout_s)
    return ModelSpec(
        name=name,
        model=given.pop("model", name),
        base_url=base_url.rstrip("/"),
        api_key=key,
        key_source=source,
        **given,
    )
