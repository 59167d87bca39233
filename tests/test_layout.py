"""The package's folders are layers: no module imports a layer above its own, and no imports
form a cycle. Read from the source (every `import`, at module level or inside a function, except
under `if TYPE_CHECKING:`), so it holds for imports that run late too."""

from __future__ import annotations

import ast
from pathlib import Path

import talkinghead

PACKAGE = Path(talkinghead.__file__).parent

# Bottom to top (docs/architecture.md). A module may import its own layer and those below.
LAYERS = [
    {"errors", "io", "__init__"},
    {"face", "media", "features"},
    {"models"},
    {"config"},
    {"model", "checkpoint", "data"},
    {"training"},
    {"inference"},
    {"evaluation"},
    {"stages"},
    {"apps"},
    {"cli", "__main__"},
]


def _modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE).with_suffix("").parts
        found[".".join(parts[:-1] if parts[-1] == "__init__" else parts) or "__init__"] = path
    return found


def _under_type_checking(tree: ast.AST) -> set[int]:
    lines = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for child in node.body:
                lines.update(range(child.lineno, child.end_lineno + 1))
    return lines


def imports(read=Path.read_text) -> dict[str, set[str]]:
    """Module -> the package's modules it imports (a submodule's import runs its packages'
    `__init__` too, so those count as imported, except the importing module's own packages).
    `read(path)`: a module's source."""
    modules = _modules()
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        tree = ast.parse(read(path))
        skip, targets = _under_type_checking(tree), set()
        for node in ast.walk(tree):
            if getattr(node, "lineno", None) in skip:
                continue
            if isinstance(node, ast.Import):
                targets.update(a.name for a in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                targets.update([node.module, *(f"{node.module}.{a.name}" for a in node.names)])
            elif isinstance(node, ast.ImportFrom) and node.level:
                raise AssertionError(f"{name}: relative import; the package imports by full name")
        found = set()
        for target in targets:
            if not target.startswith("talkinghead."):
                continue
            parts = target.split(".")[1:]
            for end in range(1, len(parts) + 1):  # the module and every package on its way
                step = ".".join(parts[:end])
                # ... but not this module's own packages: they are being imported already.
                if step in modules and (end == len(parts) or not (name + ".").startswith(step + ".")):
                    found.add(step)
        graph[name] = found - {name}
    return graph


def _layer(module: str) -> int:
    top = module.split(".")[0]
    return next(i for i, layer in enumerate(LAYERS) if top in layer)


def test_every_module_sits_in_a_layer():
    for module in _modules():
        _layer(module)  # StopIteration names a folder the layers do not know


def test_no_module_imports_a_layer_above_its_own():
    upward = [
        f"{module} -> {target}"
        for module, targets in imports().items()
        for target in targets
        if _layer(target) > _layer(module)
    ]
    assert not upward


def test_no_import_cycles():
    graph = imports()
    cycles, state = [], {}

    def visit(module: str, path: list[str]) -> None:
        state[module] = "open"
        for target in sorted(graph[module]):
            if state.get(target) == "open":
                cycles.append(path[path.index(target) :] + [target])
            elif target not in state:
                visit(target, path + [target])
        state[module] = "done"

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    assert not cycles


def test_the_walk_sees_imports_inside_functions():
    """The check catches the cycle this package used to have: avatar <-> fitting, one side
    importing inside a method."""
    avatar = _modules()["inference.avatar"]
    late = "\n\ndef _late():\n    from talkinghead.inference.fitting import fit_shots\n"
    graph = imports(lambda path: path.read_text() + (late if path == avatar else ""))
    assert "inference.fitting" in graph["inference.avatar"] and "inference.avatar" in graph["inference.fitting"]
    assert "inference.fitting" not in imports()["inference.avatar"]
