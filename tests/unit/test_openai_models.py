"""The model table: YAML or JSON, defaults, keys from the environment, the one-endpoint
shortcut, and errors that name the file."""

import json
from pathlib import Path
from typing import Any

import pytest

from services.runtime.settings import Settings
from services.worker.openai.models import SHORTCUT_KEY, ModelConfigError, load_models

TABLE = """
default_model: balanced
defaults:
  base_url: https://models.example/v1/
  api_key_env: EXAMPLE_KEY
  timeout_s: 30
models:
  balanced:
    model: vendor-medium
    price_in_per_1k: 0.5
    price_out_per_1k: 1.5
    context_window: 32000
    max_concurrency: 4
    requests_per_minute: 60
  fast:
    model: vendor-small
    structured_output: json_object
    output_limit_field: max_tokens
  strong:
    base_url: https://other.example/v1
    api_key_env: OTHER_KEY
    timeout_s: 120
"""


def settings(**values: Any) -> Settings:
    return Settings(kafka_bootstrap="localhost:1", worker_backend="openai", **values)


def test_a_yaml_table_resolves_entries_over_defaults(tmp_path: Path) -> None:
    path = tmp_path / "models.yaml"
    path.write_text(TABLE)
    env = {"EXAMPLE_KEY": "k-example"}
    table = load_models(settings(openai_models_file=path), ["fast", None], env)
    assert set(table.models) == {"balanced", "fast", "strong"}
    balanced = table.resolve(None)
    assert (balanced.name, balanced.model, balanced.base_url) == (
        "balanced",
        "vendor-medium",
        "https://models.example/v1",
    )
    assert balanced.api_key is not None and balanced.api_key.get_secret_value() == "k-example"
    assert (balanced.timeout_s, balanced.max_concurrency, balanced.requests_per_minute) == (
        30.0,
        4,
        60.0,
    )
    assert balanced.cost_usd(2000, 1000) == pytest.approx(0.5 * 2 + 1.5 * 1)
    assert balanced.output_limit_field == "max_completion_tokens"
    fast = table.resolve("fast")
    assert (fast.structured_output, fast.price_in_per_1k, fast.cost_usd(10, 10)) == (
        "json_object",
        0.0,
        0.0,
    )
    assert fast.output_limit_field == "max_tokens"
    strong = table.resolve("strong")
    assert (strong.base_url, strong.api_key, strong.key_source, strong.timeout_s) == (
        "https://other.example/v1",
        None,  # OTHER_KEY is not set: readiness reports it, loading does not fail
        "env OTHER_KEY",
        120.0,
    )
    assert len(table.endpoints()) == 2
    with pytest.raises(KeyError, match="'huge' is not configured"):
        table.resolve("huge")


def test_a_json_table_works_the_same(tmp_path: Path) -> None:
    path = tmp_path / "models.json"
    entry = {"base_url": "http://127.0.0.1:9/v1", "api_key_env": "K", "model": "m-1"}
    path.write_text(json.dumps({"models": {"solo": entry}}))
    table = load_models(settings(openai_models_file=path), ["solo"], {"K": "v"})
    assert table.resolve("solo").model == "m-1"
    assert table.default is None
    with pytest.raises(KeyError, match="no default model"):
        table.resolve(None)


def test_the_one_endpoint_shortcut_needs_no_table() -> None:
    config = settings(
        openai_base_url="http://127.0.0.1:9/v1",
        openai_api_key="sk-shortcut",
        openai_default_model="gpt-small",
    )
    table = load_models(config, [None, "gpt-large"], env={})
    assert set(table.models) == {"gpt-small", "gpt-large"}
    large = table.resolve("gpt-large")
    assert (large.model, large.base_url, large.key_source) == (
        "gpt-large",
        "http://127.0.0.1:9/v1",
        SHORTCUT_KEY,
    )
    assert large.api_key is not None and large.api_key.get_secret_value() == "sk-shortcut"
    assert table.resolve(None).name == "gpt-small"
    assert len(table.endpoints()) == 1


def test_variants_without_a_model_need_a_default() -> None:
    config = settings(openai_base_url="http://127.0.0.1:9/v1")
    with pytest.raises(ModelConfigError, match="default_model"):
        load_models(config, [None, "fast"], env={})


def test_a_model_without_an_endpoint_is_a_configuration_error(tmp_path: Path) -> None:
    path = tmp_path / "models.yaml"
    path.write_text("models:\n  fast:\n    model: small\n")
    with pytest.raises(ModelConfigError, match=r"models\.yaml.*'fast' has no base_url"):
        load_models(settings(openai_models_file=path), ["fast"], env={})


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("models:\n  fast:\n    price_in_per_1k: -1\n", "invalid model table"),
        ("models:\n  fast:\n    colour: blue\n", "invalid model table"),
        ("models: [unclosed\n", "not valid JSON/YAML"),
        ("defaults:\n  structured_output: xml\n", "invalid model table"),
        ("models:\n  fast:\n    output_limit_field: max_output\n", "invalid model table"),
    ],
)
def test_errors_name_the_file(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text(text)
    with pytest.raises(ModelConfigError) as raised:
        load_models(settings(openai_models_file=path), ["fast"], env={})
    assert str(raised.value).startswith(f"{path}: {message}")


def test_a_missing_file_is_named() -> None:
    path = Path("/nonexistent/models.yaml")
    with pytest.raises(ModelConfigError, match=r"/nonexistent/models\.yaml: cannot read"):
        load_models(settings(openai_models_file=path), [], env={})
