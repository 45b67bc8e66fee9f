"""Skill cards written by tests: a card's text from its front-matter fields and body, and a
card written where a cards directory expects it (``<folder>/SKILL.md``)."""

from pathlib import Path


def card_text(body: str = "Do the thing well.", **fields: str | None) -> str:
    values: dict[str, str | None] = {
        "name": "planner",
        "description": "Plans.",
        "role": "planner",
        "output": "planner_output",
    }
    values.update(fields)
    front = "\n".join(f"{k}: {v}" for k, v in values.items() if v is not None)
    return f"---\n{front}\n---\n{body}\n"


def write_card(directory: Path, folder: str, text: str) -> Path:
    path = directory / folder / "SKILL.md"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path
