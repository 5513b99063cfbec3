"""The package's layers import downwards only: base <- data <- model <- judging <- training <- using <- cli.

Read from the source with `ast`, so imports inside functions (the lazy ones that keep `cxr14 --help` fast) count
too: a module that reaches up a layer, even lazily, fails here.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "cxr14"
LAYERS = (
    ("cxr14", "cxr14.errors", "cxr14.labels", "cxr14.files", "cxr14.config"),
    ("cxr14.data",),
    ("cxr14.model",),
    ("cxr14.judging",),
    ("cxr14.training",),
    ("cxr14.using",),
    ("cxr14.cli", "cxr14.__main__", "cxr14.api"),
)


def layer(module: str) -> int:
    """The layer of a dotted module name: its longest matching prefix in LAYERS."""
    best, length = -1, -1
    for i, prefixes in enumerate(LAYERS):
        for p in prefixes:
            if (module == p or module.startswith(p + ".")) and len(p) > length:
                best, length = i, len(p)
    return best


def modules() -> dict[str, Path]:
    out = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


def imported(path: Path) -> set[str]:
    """Every cxr14 module `path` imports, at the top or inside a function (`from cxr14 import x` -> cxr14.x)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names if a.name.startswith("cxr14")}
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("cxr14"):
            known = modules()
            for a in node.names:
                sub = f"{node.module}.{a.name}"
                names.add(sub if sub in known else node.module)
    return names


def test_imports_run_one_way() -> None:
    found = modules()
    assert all(layer(m) >= 0 for m in found), [m for m in found if layer(m) < 0]
    upward = [
        f"{m} (layer {layer(m)}) imports {target} (layer {layer(target)})"
        for m, path in sorted(found.items())
        for target in sorted(imported(path))
        if layer(target) > layer(m)
    ]
    assert not upward, "\n".join(upward)


def test_top_of_the_package_reads_as_the_architecture() -> None:
    top = sorted(p.name for p in PACKAGE.iterdir() if p.name not in ("__pycache__", "py.typed"))
    assert top == ["__init__.py", "__main__.py", "api.py", "cli.py", "config", "data", "errors.py", "files.py",
                   "judging", "labels.py", "model", "training", "using"]  # fmt: skip
    assert all((PACKAGE / p / "__init__.py").read_text().strip() for p in ("model", "training", "judging", "using"))


def test_help_does_not_import_torch() -> None:
    """`cxr14 --help` and each command's --help stay fast: the table names functions, it does not import them."""
    code = "import sys; from cxr14.cli import build_parser; build_parser(); print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_data_reads_as_its_concerns() -> None:
    """data/: the readers, the films, the pipeline, getting NIH, the phantoms and the splits; no pile of modules."""
    top = sorted(p.name for p in (PACKAGE / "data").iterdir() if p.name != "__pycache__")
    assert top == ["__init__.py", "datasets", "films", "nih_download", "phantom", "pipeline", "splits.py"]


def test_no_import_cycle_inside_data() -> None:
    """data/'s modules import one way (a cycle, even through a lazy import, is a knot to untie first)."""
    found = {m: p for m, p in modules().items() if m.startswith("cxr14.data")}
    graph = {m: {t for t in imported(path) if t in found and t != m} for m, path in found.items()}
    graph = {m: {t for t in targets if not m.startswith(t + ".")} for m, targets in graph.items()}  # own package
    state: dict[str, int] = {}
    cycle: list[str] = []

    def visit(m: str, path: list[str]) -> bool:
        state[m] = 1
        for t in sorted(graph[m]):
            if state.get(t) == 1:
                cycle.extend([*path[path.index(t) :], t] if t in path else [m, t])
                return True
            if state.get(t) is None and visit(t, [*path, t]):
                return True
        state[m] = 2
        return False

    for m in sorted(graph):
        if state.get(m) is None and visit(m, [m]):
            break
    assert not cycle, " -> ".join(cycle)
