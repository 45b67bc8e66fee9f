"""Generate the checked-in artefacts of the event contracts from the pydantic models and the
topic table (schemas.topics).

    python -m schemas.generate [--check] [--out DIR] [--prefix PREFIX]

writes, under DIR (default: the project root):

* ``schemas/json/<Model>.json`` — one JSON Schema per event and one for the policy file;
* ``schemas/asyncapi.yaml`` — an AsyncAPI 3.0 document of the topics, their keys and messages;
* ``docs/events.md`` — the blocks between ``<!-- generated: NAME -->`` and
  ``<!-- end generated -->``; the prose around them is hand-written and kept as it is.

``--check`` writes nothing and exits 1 naming every file that differs from what the models
generate now, so CI and the contract tests catch a model changed without its artefacts.
"""

import argparse
import json
import re
import sys
import typing
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, TypeAdapter
from pydantic.json_schema import GenerateJsonSchema, JsonSchemaValue
from pydantic_core import core_schema

from schemas import _types
from schemas.events import (
    EVENT_TYPES,
    SCHEMA_VERSION,
    Event,
    TaskSubmitted,
)
from schemas.headers import headers_schema
from schemas.policy_file import POLICY_FORMAT, PolicyDocument
from schemas.topics import TOPICS, Topic

PROJECT_ROOT = Path(__file__).resolve().parent.parent
JSON_DIR = Path("schemas/json")
ASYNCAPI_FILE = Path("schemas/asyncapi.yaml")
EVENTS_DOC = Path("docs/events.md")
DEFAULT_PREFIX = "agensbus."
REGENERATE_HINT = "run `python -m schemas.generate` and commit the result"

JSON_SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"
# AsyncAPI 3.0 names no JSON Schema dialect newer than draft-07; the generated schemas use
# only keywords that mean the same in draft-07 (the contract tests validate with both).
ASYNCAPI_SCHEMA_FORMAT = "application/schema+json;version=draft-07"
KAFKA_BINDING_VERSION = "0.5.0"

#: Every contract that gets a JSON Schema file, by file stem.
CONTRACTS: dict[str, type[BaseModel]] = {
    **{event.__name__: event for event in EVENT_TYPES},
    PolicyDocument.__name__: PolicyDocument,
}


#: What each scalar type of ``schemas._types`` is for (the docs' "Scalar types" table).
TYPE_NOTES: dict[str, str] = {
    "Unit": "a probability-like score or feature",
    "Name": "names of tenants, task classes, cells, models, judges: short and log-safe",
    "Identifier": "ids chosen by callers (task, trajectory, event): printable, no whitespace",
    "DecisionId": "`<trajectory_id>:<step>`, see [Ids and deduplication](#ids-and-deduplication)",
    "ActionId": "`cell`, `cell.protocol`, `cell.protocol@model` or `skip:cell`",
    "SignatureText": "the canonical text of a folded state (`services.policy.signature`)",
    "Text": "free text written by cells or supplied with a task",
    "ShortText": "short free text: constraints, rationales, reasons, metadata values",
    "TopicName": "a Kafka topic name, prefix included (up to 249 characters)",
    "PayloadDigest": "`sha256:` and the hex SHA-256 of a stored payload's UTF-8 bytes",
}


# --- JSON Schema -----------------------------------------------------------------------------


class _ContractSchema(GenerateJsonSchema):
    """Pydantic's generator, closing a gap where the schema accepted what the models reject."""

    def dict_schema(self, schema: core_schema.DictSchema) -> JsonSchemaValue:
        json_schema = super().dict_schema(schema)
        # Pydantic moves a key pattern into patternProperties, which leaves keys that miss
        # the pattern unconstrained; the model rejects them, so the schema must too.
        if "patternProperties" in json_schema:
            json_schema["additionalProperties"] = False
        return json_schema


def contract_version(name: str) -> int:
    if name == PolicyDocument.__name__:
        return int(POLICY_FORMAT.rsplit("/", 1)[1])
    return SCHEMA_VERSION


def json_schema(name: str) -> dict[str, Any]:
    """The JSON Schema of one contract, named and versioned."""
    schema = CONTRACTS[name].model_json_schema(mode="validation", schema_generator=_ContractSchema)
    version = contract_version(name)
    return {
        **schema,
        "$schema": JSON_SCHEMA_DIALECT,
        "$id": f"urn:agensbus:schema:{name}:{version}",
        "title": f"{name} v{version}",
    }


def render_json(document: Mapping[str, Any]) -> str:
    return json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


# --- AsyncAPI --------------------------------------------------------------------------------


def _key_schema(topic: Topic) -> dict[str, Any]:
    if topic.key_field is None:
        return {"description": topic.key_note}
    field = dict(json_schema(topic.event.__name__)["properties"][topic.key_field])
    field.pop("title", None)
    return {**field, "description": f"the event's `{topic.key_field}`"}


def _config_value(value: str) -> int | float | str:
    # Kafka takes every topic config as text; the binding's schema wants numbers as numbers.
    for kind in (int, float):
        try:
            return kind(value)
        except ValueError:
            pass
    return value


def _channel_binding(topic: Topic) -> dict[str, Any]:
    configs: dict[str, object] = {k: _config_value(v) for k, v in topic.configs.items()}
    # Kafka deletes unless told to compact; the binding says which either way.
    configs["cleanup.policy"] = ["compact" if topic.compacted else "delete"]
    binding: dict[str, Any] = {} if topic.partitions is None else {"partitions": topic.partitions}
    binding["topicConfiguration"] = dict(sorted(configs.items()))
    return {**binding, "bindingVersion": KAFKA_BINDING_VERSION}


def asyncapi_document(prefix: str) -> dict[str, Any]:
    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    messages: dict[str, Any] = {}
    for topic in TOPICS:
        event = topic.event.__name__
        channels[topic.name] = {
            "address": "{prefix}" + topic.name,
            "description": f"Written by {', '.join(topic.writers)}; "
            f"read by {', '.join(topic.readers)}. Key: {topic.key}.",
            "parameters": {"prefix": {"$ref": "#/components/parameters/prefix"}},
            "messages": {event: {"$ref": f"#/components/messages/{event}"}},
            "bindings": {"kafka": _channel_binding(topic)},
        }
        for action, actors in (("send", topic.writers), ("receive", topic.readers)):
            operations[f"{action}{event}"] = {
                "action": action,
                "channel": {"$ref": f"#/channels/{topic.name}"},
                "messages": [{"$ref": f"#/channels/{topic.name}/messages/{event}"}],
                "tags": [{"name": actor} for actor in actors],
            }
        messages[event] = {
            "name": event,
            "title": f"{event} v{SCHEMA_VERSION}",
            "summary": (topic.event.__doc__ or "").strip(),
            "contentType": "application/json",
            "headers": headers_schema(event),
            "payload": {
                "schemaFormat": ASYNCAPI_SCHEMA_FORMAT,
                "schema": {"$ref": f"./json/{event}.json"},
            },
            "bindings": {
                "kafka": {"key": _key_schema(topic), "bindingVersion": KAFKA_BINDING_VERSION}
            },
        }
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "agensbus events",
            "version": str(SCHEMA_VERSION),
            "description": "The topics of agensbus and the events on them. Generated from the "
            "pydantic models in schemas/ by `python -m schemas.generate`; see docs/events.md.",
        },
        "defaultContentType": "application/json",
        "servers": {
            "kafka": {
                "host": "{bootstrap}",
                "protocol": "kafka",
                "description": "Any Kafka-protocol cluster (AGENSBUS_KAFKA_BOOTSTRAP).",
                "variables": {"bootstrap": {"default": "localhost:9092"}},
            }
        },
        "channels": channels,
        "operations": operations,
        "components": {
            "parameters": {
                "prefix": {
                    "default": prefix,
                    "description": "The deployment's topic prefix.",
                }
            },
            "messages": messages,
        },
    }


def render_yaml(document: Mapping[str, Any]) -> str:
    # Insertion order is deterministic and reads in the order the spec presents sections.
    return yaml.safe_dump(dict(document), sort_keys=False, allow_unicode=True, width=100)


# --- docs/events.md --------------------------------------------------------------------------

_BLOCK = re.compile(
    r"(<!-- generated: (?P<name>[a-z]+) -->\n)(?P<body>.*?)(<!-- end generated -->)", re.S
)


def _models_under(model: type[BaseModel]) -> Iterator[type[BaseModel]]:
    """The model and every model its fields carry, depth first."""
    yield model
    for field in model.model_fields.values():
        stack: list[object] = [field.annotation]
        while stack:
            annotation = stack.pop()
            if isinstance(annotation, type) and issubclass(annotation, BaseModel):
                yield from _models_under(annotation)
            stack.extend(typing.get_args(annotation))


def _records() -> dict[str, type[BaseModel]]:
    """Every model carried inside a contract, by name, events themselves excluded."""
    found: dict[str, type[BaseModel]] = {}
    for contract in CONTRACTS.values():
        for model in _models_under(contract):
            if found.setdefault(model.__name__, model) is not model:
                raise ValueError(f"two models are named {model.__name__}; the docs need one")
    return {n: m for n, m in sorted(found.items()) if not issubclass(m, Event)}


def _scalar_types() -> dict[str, dict[str, Any]]:
    aliases = {
        name: TypeAdapter(value).json_schema()
        for name, value in vars(_types).items()
        if typing.get_origin(value) is typing.Annotated
    }
    if aliases.keys() != TYPE_NOTES.keys():
        raise ValueError(
            f"TYPE_NOTES must describe exactly the types of schemas/_types.py: "
            f"{sorted(aliases)} vs {sorted(TYPE_NOTES)}"
        )
    return aliases


def _number(value: float) -> str:
    return f"{value:,}" if isinstance(value, int) else f"{value:g}"


def _code(text: object) -> str:
    return f"`{text}`"


class _Tables:
    """Renders field tables from the generated JSON Schemas, so the doc states exactly the
    bounds a non-Python client is held to."""

    def __init__(self) -> None:
        self.defs: dict[str, Any] = {}
        for name in CONTRACTS:
            self.defs.update(json_schema(name).get("$defs", {}))
        self.aliases = _scalar_types()

    def _alias(self, schema: Mapping[str, Any]) -> str | None:
        bare = {k: v for k, v in schema.items() if k not in ("title", "description", "default")}
        return next((name for name, s in self.aliases.items() if s == bare), None)

    def describe(self, schema: Mapping[str, Any]) -> tuple[str, str]:
        """(type, bounds) of a property schema, in words."""
        if "$ref" in schema:
            name = schema["$ref"].rsplit("/", 1)[1]
            target = self.defs[name]
            if "enum" in target:
                return _code(name), "one of " + ", ".join(_code(v) for v in target["enum"])
            return f"[{name}](#{name.lower()})", ""
        if "anyOf" in schema:
            options = [s for s in schema["anyOf"] if s != {"type": "null"}]
            kind, bounds = self.describe(options[0])
            return f"{kind} or null", bounds
        alias = self._alias(schema)
        if alias is not None:
            # A pattern is too long to repeat on every row; the types table spells it out.
            bounds = _scalar_bounds({k: v for k, v in schema.items() if k != "pattern"})
            suffix = "; pattern of the type" if "pattern" in schema else ""
            return f"[{alias}](#scalar-types)", bounds + suffix
        kind = schema.get("type", "any")
        if "const" in schema:
            return kind, "always " + _code(json.dumps(schema["const"]))
        if "enum" in schema:
            return kind, "one of " + ", ".join(_code(v) for v in schema["enum"])
        if kind == "array":
            item, item_bounds = self.describe(schema["items"])
            parts = [_count(schema, "Items", "items"), item_bounds and f"each {item_bounds}"]
            return f"list of {item}", "; ".join(p for p in parts if p)
        if kind == "object":
            return self._map(schema)
        if "format" in schema:
            kind = f"{kind} ({schema['format']})"
        return kind, _scalar_bounds(schema)

    def _map(self, schema: Mapping[str, Any]) -> tuple[str, str]:
        key_schema = {"type": "string", **schema.get("propertyNames", {})}
        values = schema.get("additionalProperties", {})
        if "patternProperties" in schema:
            ((pattern, values),) = schema["patternProperties"].items()
            key_schema["pattern"] = pattern
        key, key_bounds = self.describe(key_schema)
        value, value_bounds = self.describe(values)
        parts = [
            _count(schema, "Properties", "entries"),
            key_bounds and f"keys {key_bounds}",
            value_bounds and f"values {value_bounds}",
        ]
        return f"map {key} → {value}", "; ".join(p for p in parts if p)

    def meaning(self, model: type[BaseModel], field: str, schema: Mapping[str, Any]) -> str:
        if "description" not in schema:
            raise ValueError(
                f"{model.__name__}.{field} has no description: give it one in its model "
                "(Field(description=...)), or a type of schemas/_fields.py that has one"
            )
        return str(schema["description"])

    def table(self, model: type[BaseModel], fields: Sequence[str] | None = None) -> str:
        schema = self.defs.get(model.__name__) or json_schema(model.__name__)
        required = set(schema.get("required", ()))
        rows = ["| field | type | default | bounds | meaning |", "|---|---|---|---|---|"]
        for field in model.model_fields if fields is None else fields:
            prop = schema["properties"][field]
            kind, bounds = self.describe(prop)
            cells = (
                _code(field),
                kind,
                "required" if field in required else _default(model, field, prop),
                bounds,
                self.meaning(model, field, prop),
            )
            rows.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
        return "\n".join(rows) + "\n"


def _count(schema: Mapping[str, Any], keyword: str, noun: str) -> str:
    low, high = schema.get(f"min{keyword}"), schema.get(f"max{keyword}")
    if low and high is not None:
        return f"{_number(low)} to {_number(high)} {noun}"
    if high is not None:
        return f"≤ {_number(high)} {noun}"
    return f"≥ {_number(low)} {noun}" if low else ""


def _scalar_bounds(schema: Mapping[str, Any]) -> str:
    parts = [_count(schema, "Length", "chars")]
    if "pattern" in schema:
        parts.append("pattern " + _code(schema["pattern"]))
    parts.append(_range(schema))
    return "; ".join(p for p in parts if p)


def _range(schema: Mapping[str, Any]) -> str:
    """A numeric range in words: ``0 ≤ x ≤ 1``, ``> 0``, ``≤ 100``."""
    low, strict = schema.get("minimum"), False
    if "exclusiveMinimum" in schema:
        low, strict = schema["exclusiveMinimum"], True
    high = schema.get("maximum")
    if low is None:
        return "" if high is None else f"≤ {_number(high)}"
    if high is None:
        return f"{'>' if strict else '≥'} {_number(low)}"
    return f"{_number(low)} {'<' if strict else '≤'} x ≤ {_number(high)}"


def _default(model: type[BaseModel], field: str, prop: Mapping[str, Any]) -> str:
    if "default" in prop:
        return _code(json.dumps(prop["default"]))
    value = model.model_fields[field].get_default(call_default_factory=True)
    # Factories of ids and timestamps give a new value per event; containers and records
    # give a fixed one, shown as what a client may send instead of omitting the field.
    if isinstance(value, BaseModel):
        return _code(json.dumps(value.model_dump(mode="json", exclude_defaults=True)))
    if isinstance(value, list | dict):
        return _code(json.dumps(value))
    return "generated"


def _topics_block(tables: _Tables, prefix: str) -> str:
    rows = [
        "| topic | key | written by | read by | event | cleanup |",
        "|---|---|---|---|---|---|",
    ]
    for topic in TOPICS:
        name = topic.event.__name__
        rows.append(
            f"| `{prefix}{topic.name}` | {topic.key} | {', '.join(topic.writers)} "
            f"| {', '.join(topic.readers)} | [{name}](#{name.lower()}) "
            f"| {'compact' if topic.compacted else 'delete'} |"
        )
    return "\n".join(rows) + "\n"


def _envelope_block(tables: _Tables, prefix: str) -> str:
    return tables.table(TaskSubmitted, list(Event.model_fields))


def _events_block(tables: _Tables, prefix: str) -> str:
    sections = []
    for topic in TOPICS:
        event = topic.event
        name = event.__name__
        own = [f for f in event.model_fields if f not in Event.model_fields]
        sections.append(
            f"### {name}\n\n{(event.__doc__ or '').strip()}\n\n"
            f"- topic: `{prefix}{topic.name}`"
            f"{' (compacted)' if topic.compacted else ''}\n"
            f"- key: {topic.key}\n"
            f"- written by: {', '.join(topic.writers)}\n"
            f"- read by: {', '.join(topic.readers)}\n"
            f"- JSON Schema: [`{JSON_DIR / name}.json`](../{JSON_DIR / name}.json)\n\n"
            f"Fields besides the [envelope](#envelope):\n\n{tables.table(event, own)}"
        )
    return "\n".join(sections)


def _records_block(tables: _Tables, prefix: str) -> str:
    sections = []
    for name, model in _records().items():
        doc = (model.__doc__ or "").strip()
        intro = f"{doc}\n\n" if doc else ""
        sections.append(f"### {name}\n\n{intro}{tables.table(model)}")
    return "\n".join(sections)


def _types_block(tables: _Tables, prefix: str) -> str:
    rows = ["| type | JSON type | bounds | meaning |", "|---|---|---|---|"]
    for name, schema in tables.aliases.items():
        bounds = _scalar_bounds(schema).replace("|", "\\|")
        rows.append(f"| `{name}` | {schema['type']} | {bounds} | {TYPE_NOTES[name]} |")
    return "\n".join(rows) + "\n"


_DOC_BLOCKS = {
    "topics": _topics_block,
    "envelope": _envelope_block,
    "events": _events_block,
    "records": _records_block,
    "types": _types_block,
}


def render_events_doc(template: str, prefix: str) -> str:
    """The doc with every generated block refilled; the prose around them is kept."""
    found = [m["name"] for m in _BLOCK.finditer(template)]
    if sorted(found) != sorted(_DOC_BLOCKS):
        raise ValueError(
            f"{EVENTS_DOC} must hold each generated block exactly once: "
            f"expected {sorted(_DOC_BLOCKS)}, found {sorted(found)}"
        )
    tables = _Tables()
    text = _BLOCK.sub(lambda m: m[1] + _DOC_BLOCKS[m["name"]](tables, prefix) + m[4], template)
    return text


# --- files -----------------------------------------------------------------------------------


def expected_files(prefix: str = DEFAULT_PREFIX) -> dict[Path, str]:
    """Every generated file, by path relative to the output root, with its content."""
    files = {JSON_DIR / f"{name}.json": render_json(json_schema(name)) for name in CONTRACTS}
    files[ASYNCAPI_FILE] = render_yaml(asyncapi_document(prefix))
    files[EVENTS_DOC] = render_events_doc((PROJECT_ROOT / EVENTS_DOC).read_text("utf-8"), prefix)
    return files


def stale_files(out: Path, expected: Mapping[Path, str]) -> list[Path]:
    """Schema files under ``out`` that no contract generates any more (a rename leaves one)."""
    return sorted(
        path.relative_to(out)
        for path in (out / JSON_DIR).glob("*.json")
        if path.relative_to(out) not in expected
    )


def check(out: Path, prefix: str = DEFAULT_PREFIX) -> list[str]:
    """One line per generated file under ``out`` that is missing, different or stale."""
    expected = expected_files(prefix)
    problems = []
    for path, content in expected.items():
        target = out / path
        if not target.exists():
            problems.append(f"{path} is missing")
        elif target.read_text("utf-8") != content:
            problems.append(f"{path} differs from what the models generate")
    problems += [f"{path} has no model any more" for path in stale_files(out, expected)]
    return problems


def write(out: Path, prefix: str = DEFAULT_PREFIX) -> list[str]:
    """Write every generated file under ``out`` and delete stale ones; returns what changed."""
    expected = expected_files(prefix)
    changed = []
    for path in stale_files(out, expected):
        (out / path).unlink()
        changed.append(f"removed {path}")
    for path, content in expected.items():
        target = out / path
        if target.exists() and target.read_text("utf-8") == content:
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(content, "utf-8")
        changed.append(f"wrote {path}")
    return changed


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m schemas.generate", description=__doc__)
    parser.add_argument("--check", action="store_true", help="write nothing; fail on drift")
    parser.add_argument("--out", type=Path, default=PROJECT_ROOT, help="output root")
    parser.add_argument("--prefix", default=DEFAULT_PREFIX, help="topic name prefix")
    args = parser.parse_args(argv)
    if args.check:
        problems = check(args.out, args.prefix)
        for problem in problems:
            print(problem, file=sys.stderr)
        if problems:
            print(f"the event contracts drifted: {REGENERATE_HINT}", file=sys.stderr)
        return 1 if problems else 0
    for line in write(args.out, args.prefix) or ["everything up to date"]:
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
