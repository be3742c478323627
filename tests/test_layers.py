"""The package's dependency rules, checked on the source: every ``import`` of a qa module
(at the top or inside a function) points down the pipeline, and no two modules import each
other, directly or through others. See docs/ARCHITECTURE.md."""

from __future__ import annotations

import ast
from pathlib import Path

QA = Path(__file__).resolve().parents[1] / "qa"

# Lower numbers are lower layers; a module may import its own layer and the ones below.
LAYERS = {
    "qa": 0, "qa.types": 0, "qa.errors": 0, "qa.locking": 0, "qa.lru": 0, "qa.config": 0,
    "qa.ingest": 1,
    "qa.encoders": 2,
    "qa.index": 3,
    "qa.retrieve": 4,
    "qa.service": 5,
    "qa.mcp": 6,
    "qa.api": 7,
    "qa.evaluation": 8,
    "qa.cli": 9, "qa.__main__": 9,
}
# Settings are read at the edges only; the pipeline below the service takes plain values.
NO_SETTINGS_BELOW = 5
WEB_FRAMEWORKS = ("fastapi", "starlette", "typer", "uvicorn")


def _module_name(path: Path) -> str:
    rel = path.relative_to(QA.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _layer(module: str) -> int:
    best = ""
    for prefix in LAYERS:
        if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > len(best):
            best = prefix
    return LAYERS[best]


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            # "from qa.encoders import onnx" imports the submodule qa.encoders.onnx
            found.update(f"{node.module}.{a.name}" for a in node.names)
    return found


def _graph() -> dict[str, set[str]]:
    modules = {_module_name(p): p for p in QA.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        graph[name] = {m for m in _imports(path) if m in modules and m != name}
    return graph


def test_no_module_imports_upward():
    upward = [f"{mod} (layer {_layer(mod)}) imports {dep} (layer {_layer(dep)})"
              for mod, deps in _graph().items() for dep in deps if _layer(dep) > _layer(mod)]
    assert not upward, "\n".join(upward)


def test_no_import_cycles():
    graph = _graph()
    state: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for dep in sorted(graph[node]):
            if state.get(dep) == 1:
                cycles.append(stack[stack.index(dep):] + [dep])
            elif dep not in state:
                visit(dep)
        stack.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node)
    assert not cycles, "\n".join(" -> ".join(c) for c in cycles)


def test_lower_layers_read_no_settings_and_no_web_framework():
    offenders = []
    for path in QA.rglob("*.py"):
        mod = _module_name(path)
        if _layer(mod) >= NO_SETTINGS_BELOW or mod in LAYERS and LAYERS[mod] == 0:
            continue
        for dep in _imports(path):
            if dep == "qa.config" or dep.split(".")[0] in WEB_FRAMEWORKS:
                offenders.append(f"{mod} imports {dep}")
    assert not offenders, "\n".join(offenders)


def test_the_serving_edges_share_the_service_not_each_other():
    graph = _graph()
    mcp_to_api = [(m, d) for m, deps in graph.items() if m.startswith("qa.mcp")
                  for d in deps if d.startswith("qa.api")]
    assert not mcp_to_api
    # The HTTP app mounts the MCP endpoint in its factory; no route module reaches into MCP
    # except GET /tools, which lists the same tool definitions.
    api_to_mcp = {m for m, deps in graph.items() if m.startswith("qa.api")
                  for d in deps if d.startswith("qa.mcp")}
    assert api_to_mcp <= {"qa.api.app", "qa.api.tool_routes"}, api_to_mcp
