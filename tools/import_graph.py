#!/usr/bin/env python3
"""Count what the design rules forbid in the package's import graph and code shape.

    python3 tools/import_graph.py [SRC_DIR] [--json] [--check]

``SRC_DIR`` is the folder that holds the ``culture_neurons`` package (default: ``src`` beside this
script's parent). The script only parses files (``ast``); it imports nothing from the package, so
it runs on any checkout. It reports:

- import cycles between modules (strongly connected components of the graph of every import,
  top-level, inside a function or under ``if TYPE_CHECKING:``, a module importing its own package's
  ``__init__`` included), leaving out the benchmark registry's self-registration
  (``data.registry`` loading ``data.benchmarks``, whose modules register themselves with it);
- arrows from a lower layer to a higher one (the layers of ``docs/design.md``). The package root
  re-exports the public API, so it is the top layer: any import of it from inside the package
  (``from .. import __version__``) is an upward arrow. A ``X/cli.py`` module is in layer ``X``
  (it wires X's API into commands and may import only what X may); only the top-level ``cli`` and
  ``__main__`` are the CLI layer;
- private names (``_x``) imported from another module;
- function-local imports (all, and those of the package's own modules);
- the longest module and function, modules over 400 lines, functions over 80 lines and functions
  with more than 12 parameters (flagged: group such options into a dataclass).

``--check`` exits 1 when any cycle, upward arrow or private import is found; ``--strict`` also
when a function takes more than 12 parameters.
"""

from __future__ import annotations

import argparse
import ast
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

PACKAGE = "culture_neurons"
# Lowest first. A module's layer is that of the longest prefix listed; ``X/cli.py`` modules are CLI.
LAYERS = [
    ("version", "errors", "fileio", "rundir", "distributed", "progress", "signals"),
    ("models",),
    ("data", "chance"),
    ("likelihood",),
    ("attribution",),
    ("selection",),
    ("intervention",),
    ("evaluation",),
    ("analysis", "validity", "cards"),
    ("training",),
    ("pipeline",),
    ("integrations",),
    ("cli", "__main__"),
    ("",),  # the package root: it re-exports the public API from every layer
]
LAYER_NAMES = [
    "errors/fileio",
    "models",
    "data",
    "likelihood",
    "attribution",
    "selection",
    "intervention",
    "evaluation",
    "analysis",
    "training",
    "pipeline",
    "integrations",
    "cli",
    "package root",
]
# The registry imports the benchmark modules by name so they register themselves: an intended cycle.
ALLOWED_EDGES = {("data.registry", "data.benchmarks")}
MAX_MODULE, MAX_FUNCTION, MAX_PARAMS = 400, 80, 12


@dataclass
class Module:
    name: str  # dotted, without the package prefix ("pipeline.run"); "" is the package itself
    path: Path
    is_package: bool
    lines: int = 0
    edges: dict[str, list[tuple[int, bool]]] = field(default_factory=dict)  # target -> [(line, local)]
    private: list[tuple[int, str, str]] = field(default_factory=list)  # (line, target, name)
    local_imports: list[tuple[int, str, bool]] = field(default_factory=list)  # (line, what, internal)
    functions: list[tuple[str, int, int, int]] = field(default_factory=list)  # (qualname, line, length, params)


def module_name(root: Path, path: Path) -> tuple[str, bool]:
    rel = path.relative_to(root).with_suffix("")
    parts = list(rel.parts)
    is_package = parts[-1] == "__init__"
    if is_package:
        parts = parts[:-1]
    return ".".join(parts), is_package


def layer_of(name: str) -> int | None:
    if name == "":
        return len(LAYERS) - 1
    head = name.split(".", 1)[0]
    for i, names in enumerate(LAYERS):
        if head in names:
            return i
    return None


def resolve(current: Module, level: int, target: str | None) -> str | None:
    """The dotted in-package name an import refers to, or None for another distribution."""
    if level == 0:
        if target is None or not (target == PACKAGE or target.startswith(PACKAGE + ".")):
            return None
        return target[len(PACKAGE) + 1 :] if target != PACKAGE else ""
    base = current.name.split(".") if current.name else []
    if not current.is_package:
        base = base[:-1]
    if level > 1:
        base = base[: len(base) - (level - 1)]
    parts = base + (target.split(".") if target else [])
    return ".".join(p for p in parts if p)


class Visitor(ast.NodeVisitor):
    def __init__(self, module: Module, known: set[str]) -> None:
        self.module = module
        self.known = known
        self.stack: list[str] = []  # enclosing function/class names
        self.in_function = 0
        self.aliases: dict[str, str] = {}  # local name -> in-package module it is bound to

    def _edge(self, target: str, line: int) -> None:
        # A module importing its own package's ``__init__`` is an edge like any other: the
        # ``__init__`` imports its modules back, so such an import is a cycle (and, for the package
        # root, an upward arrow). Only a package naming itself is left out.
        if target == self.module.name:
            return
        self.module.edges.setdefault(target, []).append((line, self.in_function > 0))

    def _target_module(self, dotted: str) -> str:
        # The longest existing module prefix ("models.loading.load_model" -> "models.loading").
        parts = dotted.split(".")
        while parts and ".".join(parts) not in self.known:
            parts.pop()
        return ".".join(parts)

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            target = resolve(self.module, 0, alias.name)
            self._local(node, alias.name, target is not None)
            if target is not None:
                mod = self._target_module(target)
                self._edge(mod, node.lineno)
                if alias.asname:
                    self.aliases[alias.asname] = mod

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        base = resolve(self.module, node.level, node.module)
        self._local(node, ("." * node.level) + (node.module or ""), base is not None)
        if base is None:
            return
        for alias in node.names:
            sub = f"{base}.{alias.name}" if base else alias.name
            if sub in self.known:  # "from . import blend": the submodule itself
                self._edge(sub, node.lineno)
                self.aliases[alias.asname or alias.name] = sub
                continue
            mod = self._target_module(base)
            self._edge(mod, node.lineno)
            if alias.name.startswith("_") and not alias.name.startswith("__") and mod != self.module.name:
                self.module.private.append((node.lineno, mod, alias.name))

    def visit_Attribute(self, node: ast.Attribute) -> None:
        # module_alias._private
        if (
            isinstance(node.value, ast.Name)
            and node.value.id in self.aliases
            and node.attr.startswith("_")
            and not node.attr.startswith("__")
        ):
            self.module.private.append((node.lineno, self.aliases[node.value.id], node.attr))
        self.generic_visit(node)

    def visit_Call(self, node: ast.Call) -> None:
        # importlib.import_module("culture_neurons.x"): a dynamic import with a literal name.
        func = node.func
        name = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""
        if (
            name == "import_module"
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            target = resolve(self.module, 0, node.args[0].value)
            if target is not None:
                self._edge(self._target_module(target), node.lineno)
        self.generic_visit(node)

    def _local(self, node: ast.stmt, what: str, internal: bool) -> None:
        if self.in_function:
            self.module.local_imports.append((node.lineno, what, internal))

    def _function(self, node: ast.FunctionDef | ast.AsyncFunctionDef) -> None:
        a = node.args
        params = [*a.posonlyargs, *a.args, *a.kwonlyargs]
        count = (
            len([p for p in params if p.arg not in ("self", "cls")]) + (a.vararg is not None) + (a.kwarg is not None)
        )
        qual = ".".join([*self.stack, node.name])
        self.module.functions.append((qual, node.lineno, (node.end_lineno or node.lineno) - node.lineno + 1, count))
        self.stack.append(node.name)
        self.in_function += 1
        self.generic_visit(node)
        self.in_function -= 1
        self.stack.pop()

    visit_FunctionDef = _function
    visit_AsyncFunctionDef = _function

    def visit_ClassDef(self, node: ast.ClassDef) -> None:
        self.stack.append(node.name)
        self.generic_visit(node)
        self.stack.pop()

    # Imports under ``if TYPE_CHECKING:`` never run, but they are dependencies all the same: two
    # modules that name each other's types are one design unit in a circle, so they count.


def collect(src: Path) -> dict[str, Module]:
    root = src / PACKAGE
    if not root.is_dir():
        raise SystemExit(f"{src} holds no {PACKAGE} package")
    modules: dict[str, Module] = {}
    for path in sorted(root.rglob("*.py")):
        name, is_package = module_name(root, path)
        modules[name] = Module(name, path, is_package)
    known = set(modules)
    for mod in modules.values():
        text = mod.path.read_text(encoding="utf-8")
        mod.lines = len(text.splitlines())
        Visitor(mod, known).visit(ast.parse(text, filename=str(mod.path)))
    return modules


def shown(name: str) -> str:
    """A module's name in the report: the package root is ``culture_neurons``, not the empty string."""
    return name or PACKAGE


def allowed(src: str, dst: str) -> bool:
    return any(
        (src == a or src.startswith(a + ".")) and (dst == b or dst.startswith(b + ".")) for a, b in ALLOWED_EDGES
    ) or any((src == b or src.startswith(b + ".")) and (dst == a or dst.startswith(a + ".")) for a, b in ALLOWED_EDGES)


def cycles(modules: dict[str, Module]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan), each sorted."""
    graph = {m: sorted(t for t in mod.edges if t in modules and not allowed(m, t)) for m, mod in modules.items()}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []
    counter = [0]

    def strong(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                strong(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    sys.setrecursionlimit(10_000)
    for v in graph:
        if v not in index:
            strong(v)
    return sorted(out)


def simple_cycles(modules: dict[str, Module], limit: int = 10_000) -> list[list[str]]:
    """Every elementary cycle (each listed once, from its smallest module), up to ``limit``."""
    graph = {m: sorted(t for t in mod.edges if t in modules and not allowed(m, t)) for m, mod in modules.items()}
    found: list[list[str]] = []
    for start in sorted(graph):
        # Only cycles whose smallest module is ``start``: each cycle is found exactly once.
        path, stack = [start], [iter(w for w in graph[start] if w >= start)]
        while stack and len(found) < limit:
            nxt = next(stack[-1], None)
            if nxt is None:
                stack.pop()
                path.pop()
            elif nxt == start:
                found.append(list(path))
            elif nxt not in path:
                path.append(nxt)
                stack.append(iter(w for w in graph[nxt] if w >= start))
    return sorted(found, key=lambda c: (len(c), c))


def analyse(src: Path) -> dict:
    modules = collect(src)
    upward = []
    for name, mod in modules.items():
        lo = layer_of(name)
        for target, uses in mod.edges.items():
            hi = layer_of(target)
            if lo is not None and hi is not None and hi > lo:
                upward.append(
                    {
                        "from": shown(name),
                        "to": shown(target),
                        "line": uses[0][0],
                        "layers": f"{LAYER_NAMES[lo]} -> {LAYER_NAMES[hi]}",
                    }
                )
    private = [
        {"module": shown(m.name), "line": line, "from": shown(target), "name": n}
        for m in modules.values()
        for line, target, n in m.private
    ]
    local = [(m.name, line, what, internal) for m in modules.values() for line, what, internal in m.local_imports]
    functions = [(m.name, q, line, length, params) for m in modules.values() for q, line, length, params in m.functions]
    longest_mod = max(modules.values(), key=lambda m: m.lines)
    longest_fn = max(functions, key=lambda f: f[3])
    unlayered = sorted(n for n in modules if n and layer_of(n) is None)
    return {
        "source": str(src),
        "modules": len(modules),
        "cycles": [[shown(m) for m in c] for c in cycles(modules)],
        "simple_cycles": [[shown(m) for m in c] for c in simple_cycles(modules)],
        "upward_imports": sorted(upward, key=lambda u: (u["from"], u["to"])),
        "private_imports": sorted(private, key=lambda p: (p["module"], p["line"])),
        "function_local_imports": len(local),
        "function_local_imports_internal": sum(1 for x in local if x[3]),
        "longest_module": {"module": longest_mod.name or PACKAGE, "lines": longest_mod.lines},
        "longest_function": {
            "module": longest_fn[0],
            "function": longest_fn[1],
            "line": longest_fn[2],
            "lines": longest_fn[3],
        },
        "modules_over_limit": sorted(
            ({"module": m.name, "lines": m.lines} for m in modules.values() if m.lines > MAX_MODULE),
            key=lambda x: -x["lines"],
        ),
        "functions_over_limit": sorted(
            ({"module": f[0], "function": f[1], "lines": f[3]} for f in functions if f[3] > MAX_FUNCTION),
            key=lambda x: -x["lines"],
        ),
        "functions_over_params": sorted(
            ({"module": f[0], "function": f[1], "params": f[4]} for f in functions if f[4] > MAX_PARAMS),
            key=lambda x: -x["params"],
        ),
        "unlayered_modules": unlayered,
    }


def render(r: dict) -> str:
    out = [f"import graph of {r['source']} ({r['modules']} modules)", ""]
    out.append(f"groups of modules in import cycles (registry self-registration excluded): {len(r['cycles'])}")
    out += [f"  {' <-> '.join(c)}" for c in r["cycles"]]
    out.append(f"elementary import cycles: {len(r['simple_cycles'])}")
    out += [f"  {' -> '.join([*c, c[0]])}" for c in r["simple_cycles"]]
    out.append(f"imports from a lower layer to a higher one: {len(r['upward_imports'])}")
    out += [f"  {u['from']}:{u['line']} -> {u['to']}  ({u['layers']})" for u in r["upward_imports"]]
    out.append(f"private names imported across modules: {len(r['private_imports'])}")
    out += [f"  {p['module']}:{p['line']} uses {p['from']}.{p['name']}" for p in r["private_imports"]]
    out.append(
        f"function-local imports: {r['function_local_imports']} "
        f"({r['function_local_imports_internal']} of the package's own modules)"
    )
    lm, lf = r["longest_module"], r["longest_function"]
    out.append(f"longest module: {lm['module']} ({lm['lines']} lines)")
    out.append(f"longest function: {lf['module']}.{lf['function']} ({lf['lines']} lines)")
    out.append(f"modules over {MAX_MODULE} lines: {len(r['modules_over_limit'])}")
    out += [f"  {m['module']}: {m['lines']}" for m in r["modules_over_limit"]]
    out.append(f"functions over {MAX_FUNCTION} lines: {len(r['functions_over_limit'])}")
    out += [f"  {f['module']}.{f['function']}: {f['lines']}" for f in r["functions_over_limit"]]
    out.append(f"functions with more than {MAX_PARAMS} parameters: {len(r['functions_over_params'])}")
    out += [f"  {f['module']}.{f['function']}: {f['params']}" for f in r["functions_over_params"]]
    if r["unlayered_modules"]:
        out.append(f"modules outside the layer list: {', '.join(r['unlayered_modules'])}")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("src", nargs="?", default=str(Path(__file__).resolve().parent.parent / "src"))
    parser.add_argument("--json", action="store_true", help="print the counts as JSON")
    parser.add_argument("--check", action="store_true", help="exit 1 on any cycle, upward import or private import")
    parser.add_argument(
        "--strict", action="store_true", help=f"--check, and exit 1 on a function of over {MAX_PARAMS} parameters"
    )
    args = parser.parse_args(argv)
    report = analyse(Path(args.src))
    print(json.dumps(report, indent=2, ensure_ascii=False) if args.json else render(report))
    bad = report["cycles"] or report["upward_imports"] or report["private_imports"]
    if args.strict:
        bad = bad or report["functions_over_params"]
    return 1 if (args.check or args.strict) and bad else 0


if __name__ == "__main__":
    sys.exit(main())
