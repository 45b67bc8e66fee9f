"""Every property of every checked-in JSON Schema says what it holds, nested definitions
included: a client in another language reads the meaning from the schema itself."""

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from schemas.generate import JSON_DIR, PROJECT_ROOT

SCHEMA_FILES = sorted((PROJECT_ROOT / JSON_DIR).glob("*.json"))


def properties(node: Any, where: str) -> Iterator[tuple[str, Any]]:
    """(JSON pointer, schema) of every named property anywhere under ``node``."""
    if isinstance(node, dict):
        for name, value in node.items():
            if name == "properties" and isinstance(value, dict):
                for prop, schema in value.items():
                    yield f"{where}/properties/{prop}", schema
            yield from properties(value, f"{where}/{name}")
    elif isinstance(node, list):
        for index, item in enumerate(node):
            yield from properties(item, f"{where}/{index}")


def test_the_walk_reaches_nested_definitions() -> None:
    schema = {
        "properties": {"a": {"description": "x"}},
        "$defs": {"Inner": {"properties": {"b": {"type": "string"}}}},
    }
    assert [where for where, _ in properties(schema, "#")] == [
        "#/properties/a",
        "#/$defs/Inner/properties/b",
    ]


def test_there_are_schemas_to_check() -> None:
    assert len(SCHEMA_FILES) >= 8


@pytest.mark.parametrize("path", SCHEMA_FILES, ids=lambda p: p.name)
def test_every_property_has_a_description(path: Path) -> None:
    schema = json.loads(path.read_text("utf-8"))
    found = list(properties(schema, "#"))
    assert found
    undescribed = [
        where
        for where, prop in found
        if not (isinstance(prop, dict) and str(prop.get("description", "")).strip())
    ]
    assert not undescribed, f"{path.name}: properties without a description: {undescribed}"
