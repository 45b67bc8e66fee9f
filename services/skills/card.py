"""A skill card (SKILL.md): YAML front matter that says what the card is, then the
instructions a model gets, as Markdown. Parsing is pure; :mod:`services.skills.load` reads
the files."""

import re
from dataclasses import dataclass
from typing import Any

import yaml

from schemas.records import Role

#: Card names and protocols: lowercase words joined by ``-`` or ``_`` (a protocol becomes
#: part of an action id, ``solver.concise@model``, so it may hold no ``.`` or ``@``).
_NAME = re.compile(r"^[a-z0-9]+(?:[-_][a-z0-9]+)*$")
_REQUIRED = ("name", "description", "role", "output")
_FIELDS = (*_REQUIRED, "protocol")
_FENCE = "---"


class SkillError(ValueError):
    """A card, or the set of cards, is unusable: says which file and what is wrong."""

    def __init__(self, source: str | None, problem: str) -> None:
        # No source: a problem of the set of cards, not of one file.
        super().__init__(f"skill card {source}: {problem}" if source else f"skill cards: {problem}")
        self.source = source
        self.problem = problem


@dataclass(frozen=True, slots=True)
class SkillCard:
    name: str
    description: str
    role: Role
    output: str
    protocol: str | None
    body: str
    #: Where the card came from (its file), for messages and ``skills list``.
    source: str

    @property
    def key(self) -> tuple[Role, str | None]:
        """What the card instructs: a role, or one protocol of a role."""
        return self.role, self.protocol


def output_of(role: Role) -> str:
    """The reference of a role's output schema, as cards name it and as requests name the
    schema they ask for."""
    return f"{role.value}_output"


def parse_card(text: str, source: str) -> SkillCard:
    """The card in ``text``; raises :class:`SkillError` naming ``source`` and the problem."""
    front, body = _split(text, source)
    fields = _front_matter(front, source)
    role = _role(fields["role"], source)
    expected = output_of(role)
    if fields["output"] != expected:
        known = {output_of(r) for r in Role}
        what = "does not match" if fields["output"] in known else "is not an output schema;"
        raise SkillError(
            source, f"output {fields['output']!r} {what} role {role.value} (expects {expected!r})"
        )
    if not body.strip():
        raise SkillError(source, "the body (the instructions after the front matter) is empty")
    return SkillCard(
        name=fields["name"],
        description=fields["description"],
        role=role,
        output=fields["output"],
        protocol=fields.get("protocol"),
        body=body.strip(),
        source=source,
    )


def _split(text: str, source: str) -> tuple[str, str]:
    lines = text.lstrip("\ufeff").splitlines()
    if not lines or lines[0].strip() != _FENCE:
        raise SkillError(source, f"no front matter: the file must start with a '{_FENCE}' line")
    for number, line in enumerate(lines[1:], start=1):
        if line.strip() == _FENCE:
            return "\n".join(lines[1:number]), "\n".join(lines[number + 1 :])
    raise SkillError(source, f"the front matter is not closed by a '{_FENCE}' line")


def _front_matter(front: str, source: str) -> dict[str, str]:
    try:
        data: Any = yaml.safe_load(front)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        # The file's line: the front matter starts on the file's second line.
        where = f" at line {mark.line + 2}, column {mark.column + 1}" if mark else ""
        problem = getattr(error, "problem", None) or type(error).__name__
        raise SkillError(source, f"the front matter is not valid YAML{where}: {problem}") from None
    if not isinstance(data, dict):
        raise SkillError(source, "the front matter must be a mapping of fields (name: ...)")
    unknown = sorted(str(k) for k in data if k not in _FIELDS)
    if unknown:
        raise SkillError(
            source, f"unknown field(s) {', '.join(unknown)} (fields: {', '.join(_FIELDS)})"
        )
    missing = [k for k in _REQUIRED if k not in data]
    if missing:
        raise SkillError(source, f"missing field(s) {', '.join(missing)}")
    for key, value in data.items():
        if not isinstance(value, str) or not value.strip():
            raise SkillError(source, f"field {key} must be a non-empty string")
    for key in ("name", "protocol"):
        if key in data and not _NAME.match(data[key]):
            raise SkillError(
                source,
                f"{key} {data[key]!r} must be lowercase letters and digits, words joined "
                "by '-' or '_'",
            )
    return {str(k): v.strip() for k, v in data.items()}


def _role(value: str, source: str) -> Role:
    try:
        return Role(value)
    except ValueError:
        roles = ", ".join(r.value for r in Role)
        raise SkillError(source, f"unknown role {value!r} (roles: {roles})") from None
