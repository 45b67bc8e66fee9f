"""The services and the domain never import the simulator: what a deployment routes comes
from its pipeline file, and only the simulated backend and judge (in services.sim, found
through their entry points) know the simulated world. The worker, its openai backend and
tools, and the judge import one another in one direction, with no import hidden inside a
function."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
GUARDED = ("router", "learner", "worker", "judge", "runtime", "policy", "pipeline")
FORBIDDEN = "services.sim"


def imported_modules(tree: ast.AST) -> list[tuple[int, str]]:
    """Every module an import statement anywhere in ``tree`` names (inside functions too),
    with the line it is on; ``from services import sim`` counts as ``services.sim``."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module is not None and node.level == 0:
            found.append((node.lineno, node.module))
            found += [(node.lineno, f"{node.module}.{alias.name}") for alias in node.names]
    return found


def reaches_sim(module: str) -> bool:
    return module == FORBIDDEN or module.startswith(FORBIDDEN + ".")


@pytest.mark.parametrize("package", GUARDED)
def test_no_guarded_module_imports_the_simulator(package: str) -> None:
    files = sorted((ROOT / "services" / package).rglob("*.py"))
    assert files, f"services/{package} has no modules"
    offending = [
        f"{path.relative_to(ROOT)}:{line}: {module}"
        for path in files
        for line, module in imported_modules(ast.parse(path.read_text(encoding="utf-8")))
        if reaches_sim(module)
    ]
    assert offending == []


def test_the_check_sees_imports_hidden_in_functions() -> None:
    source = (
        "def build():\n"
        "    from services import sim\n"
        "    import services.sim.world\n"
        "    from services.simulate import x\n"
    )
    names = [m for _, m in imported_modules(ast.parse(source)) if reaches_sim(m)]
    assert names == ["services.sim", "services.sim.world"]


# --- the worker, its openai backend and tools, and the judge import in one direction ---------

LAYERED = ("worker", "judge")


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def load_edges(modules: set[str], name: str, tree: ast.AST) -> set[str]:
    """The modules of ``modules`` that importing ``name`` executes first: each one it
    imports, and the packages around it (``from a.b.c import x`` runs ``a.b`` too), except
    the packages ``name`` itself sits in, which are loading already."""
    own = {name.rsplit(".", i)[0] for i in range(1, name.count(".") + 1)}
    edges: set[str] = set()
    for _, target in imported_modules(tree):
        while target not in modules and "." in target:
            target = target.rsplit(".", 1)[0]  # ``from package import name``
        parts = target.split(".")
        chain = {".".join(parts[:i]) for i in range(1, len(parts) + 1)}
        edges |= {m for m in chain if m in modules and m not in own and m != name}
    return edges


def test_worker_openai_tools_and_judge_import_without_a_circle() -> None:
    paths = [p for package in LAYERED for p in (ROOT / "services" / package).rglob("*.py")]
    trees = {module_name(p): ast.parse(p.read_text(encoding="utf-8")) for p in paths}
    graph = {name: load_edges(set(trees), name, tree) for name, tree in trees.items()}
    done: set[str] = set()

    def visit(name: str, path: tuple[str, ...]) -> None:
        if name in path:
            raise AssertionError("import circle: " + " -> ".join((*path, name)))
        if name in done:
            return
        for target in sorted(graph[name]):
            visit(target, (*path, name))
        done.add(name)

    for name in sorted(graph):
        visit(name, ())


def test_no_worker_or_judge_module_imports_inside_a_function() -> None:
    """Imports inside functions are how a circle hides; the one allowed kind is a typing
    import under ``if TYPE_CHECKING``, which never runs."""
    hidden = []
    for package in LAYERED:
        for path in sorted((ROOT / "services" / package).rglob("*.py")):
            tree = ast.parse(path.read_text(encoding="utf-8"))
            for function in ast.walk(tree):
                if isinstance(function, ast.FunctionDef | ast.AsyncFunctionDef):
                    hidden += [
                        f"{path.relative_to(ROOT)}:{node.lineno}"
                        for node in ast.walk(function)
                        if isinstance(node, ast.Import | ast.ImportFrom)
                    ]
    assert hidden == []
