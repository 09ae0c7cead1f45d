"""Import rules (issue 12, item 6), checked by reading every module's source with ``ast``;
nothing of ours is imported here, so a broken module cannot hide a violation.

The rules, for the modules of the five subpackages (``hw``, ``sim``, ``perf``, ``boards``,
``flows``):

1. Layers.  ``hw`` imports nothing of ours but ``hw``.  ``sim`` builds on ``hw`` (and itself),
   ``perf`` on ``hw`` (and itself); ``sim`` and ``perf`` do not import each other.  ``boards``
   builds on ``hw``.  ``flows`` may import anything, and nothing but ``flows`` imports ``flows``
   (``tests/`` and ``bench/`` may import anything).
2. No import cycle between modules.  Every import counts, also those inside a function: a
   deferred import does not make an import-time cycle, but the two modules still depend on each
   other, so the shared piece belongs in a module below both.  Only imports written in the
   source count: the implicit import of a package's ``__init__`` when one of its submodules is
   imported does not (otherwise every package whose ``__init__`` re-exports its submodules
   would be a cycle).
3. No private name taken from another module: neither ``from x import _y`` nor ``x._y`` on a
   name bound to one of our modules.  Dunder names (``__version__``) are not private.  This
   holds for ``bench/`` too (a script is a client like any other); ``tests/`` may reach into
   a module's privates to test them.

Imports are resolved to our module names: relative ones (``from ..x import y``,
``from . import z``) and absolute ``llmloom.*`` ones; ``from p import n`` means the module
``p.n`` when that is a module, else ``p``.  Dynamic imports (``importlib.import_module``) are not
seen; the two we have stay inside their subpackage (``sim.harness`` loading ``sim.blocks``,
``boards.platforms`` loading a board's platform class, e.g. ``boards.u280``).
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TOP = "llmloom"
SUBPACKAGES = ("hw", "sim", "perf", "flows", "boards")
CLIENTS = ("bench",)    # folders of scripts held to rule 3 only

# What each subpackage may import (of ours); flows may import anything.
ALLOWED = {
    "hw": {"hw"},
    "sim": {"hw", "sim"},
    "perf": {"hw", "perf"},
    "boards": {"hw", "boards"},
    "flows": set(SUBPACKAGES),
}


@dataclass(frozen=True)
class Import:
    source: str         # importing module
    target: str         # imported module (ours)
    line: int
    deferred: bool      # inside a function


@dataclass(frozen=True)
class Violation:
    module: str
    line: int
    what: str

    def __str__(self):
        return f"{self.module}{f':{self.line}' if self.line else ''}: {self.what}"


def find_modules(root: Path, subpackages=SUBPACKAGES) -> dict[str, Path]:
    """``{module name: file}`` for every ``.py`` under the subpackage folders of ``root``."""
    modules = {}
    for sub in subpackages:
        base = root / sub
        for path in sorted(base.rglob("*.py")):
            parts = path.relative_to(base).with_suffix("").parts
            if any(p.startswith(".") or p == "__pycache__" for p in parts):
                continue
            if parts[-1] == "__init__":
                parts = parts[:-1]
            modules[".".join((TOP, sub, *parts))] = path
    return modules


def find_clients(root: Path, folders=CLIENTS) -> dict[str, Path]:
    """``{name: file}`` for the scripts under ``folders`` (named ``bench.x``, never ours)."""
    return {".".join(path.relative_to(root).with_suffix("").parts): path
            for folder in folders for path in sorted((root / folder).rglob("*.py"))}


def _is_private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _layer(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[0] == TOP else None


class _Reader(ast.NodeVisitor):
    """Collects one module's imports and private-name uses."""

    def __init__(self, module: str, is_package: bool, modules: set[str]):
        self.module = module
        self.package = module if is_package else module.rpartition(".")[0]
        self.modules = modules
        self.imports: list[Import] = []
        self.private: list[Violation] = []
        self.bound: dict[str, str] = {}     # local name -> our module it is bound to
        self.depth = 0

    # -- resolution
    def _base(self, node: ast.ImportFrom) -> str | None:
        if node.level == 0:
            return node.module
        parts = self.package.split(".")
        if node.level - 1 > len(parts):
            return None
        base = ".".join(parts[: len(parts) - (node.level - 1)])
        return f"{base}.{node.module}" if node.module else base

    def _ours(self, name: str | None) -> str | None:
        """The longest prefix of a dotted name that is one of our modules."""
        if not name or not (name == TOP or name.startswith(TOP + ".")):
            return None
        parts = name.split(".")
        for n in range(len(parts), 1, -1):
            if ".".join(parts[:n]) in self.modules:
                return ".".join(parts[:n])
        return None

    def _add(self, target: str | None, node: ast.AST):
        if target and target != self.module:
            self.imports.append(Import(self.module, target, node.lineno, self.depth > 0))

    # -- visitors
    def visit_FunctionDef(self, node):
        self.depth += 1
        self.generic_visit(node)
        self.depth -= 1

    visit_AsyncFunctionDef = visit_FunctionDef
    visit_Lambda = visit_FunctionDef

    def visit_Import(self, node: ast.Import):
        for alias in node.names:
            target = self._ours(alias.name)
            self._add(target, node)
            if target is None:
                continue
            if alias.asname:
                # `import a.b.c as m` binds m to a.b.c
                self.bound[alias.asname] = alias.name
            else:
                # `import a.b.c` binds a (and a.b.c is reached as an attribute chain)
                self.bound[alias.name.split(".")[0]] = alias.name.split(".")[0]

    def visit_ImportFrom(self, node: ast.ImportFrom):
        base = self._base(node)
        if base is None:
            return
        ours = self._ours(base) if base != TOP else TOP
        if ours is None:
            return
        for alias in node.names:
            full = f"{base}.{alias.name}"
            if full in self.modules:
                self._add(full, node)
                self.bound[alias.asname or alias.name] = full
            else:
                self._add(self._ours(base), node)
            if _is_private(alias.name) and (full if full in self.modules else base) != self.module:
                self.private.append(Violation(
                    self.module, node.lineno,
                    f"imports private name {alias.name!r} from {base}"))

    def visit_Attribute(self, node: ast.Attribute):
        chain = []
        value = node.value
        while isinstance(value, ast.Attribute):
            chain.append(value.attr)
            value = value.value
        if isinstance(value, ast.Name) and value.id in self.bound and _is_private(node.attr):
            dotted = ".".join([self.bound[value.id], *reversed(chain)])
            if dotted in self.modules and dotted != self.module:
                self.private.append(Violation(
                    self.module, node.lineno, f"uses private name {dotted}.{node.attr}"))
        self.generic_visit(node)


def read_imports(modules: dict[str, Path], clients: dict[str, Path] | None = None
                 ) -> tuple[list[Import], list[Violation]]:
    """Every import between our modules, and every private name taken from another module
    by our modules or by the ``clients`` (whose own imports are not returned)."""
    names = set(modules)
    imports, private = [], []
    for module, path in [*modules.items(), *(clients or {}).items()]:
        tree = ast.parse(path.read_text(), filename=str(path))
        reader = _Reader(module, path.name == "__init__.py", names)
        reader.visit(tree)
        if module in names:
            imports += reader.imports
        private += reader.private
    return imports, private


def layer_violations(imports: list[Import]) -> list[Violation]:
    out = []
    for imp in imports:
        src, dst = _layer(imp.source), _layer(imp.target)
        if src is None or dst is None or dst in ALLOWED.get(src, set()):
            continue
        rule = ("nothing but flows imports flows" if dst == "flows"
                else f"{src} may import only {', '.join(sorted(ALLOWED[src]))}")
        where = " (in a function)" if imp.deferred else ""
        out.append(Violation(imp.source, imp.line,
                             f"imports {imp.target}{where}: {rule}"))
    return out


def cycles(imports: list[Import]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), each sorted."""
    graph: dict[str, set[str]] = {}
    for imp in imports:
        graph.setdefault(imp.source, set()).add(imp.target)
        graph.setdefault(imp.target, set())
    index, low, stack, on_stack, out = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return sorted(out)


def cycle_violations(imports: list[Import]) -> list[Violation]:
    out = []
    for component in cycles(imports):
        members = set(component)
        edges = sorted({(i.source, i.line, i.target, i.deferred) for i in imports
                        if i.source in members and i.target in members})
        detail = "".join(f"\n      {s}:{line} imports {t}{' (in a function)' if d else ''}"
                         for s, line, t, d in edges)
        out.append(Violation(component[0], 0,
                             f"import cycle among {', '.join(component)}:{detail}"))
    return out


def check(root: Path, subpackages=SUBPACKAGES, clients=CLIENTS) -> dict[str, list[Violation]]:
    """All violations of the import rules under ``root``, by rule."""
    imports, private = read_imports(find_modules(root, subpackages), find_clients(root, clients))
    return {"layers": layer_violations(imports), "cycles": cycle_violations(imports),
            "private": private}


def _report(violations: list[Violation]) -> str:
    return "\n" + "\n".join(f"  {v}" for v in violations)


# -- the rules on our own code

def test_modules_found():
    modules = find_modules(ROOT)
    for sub in SUBPACKAGES:
        assert f"{TOP}.{sub}" in modules, sub
    assert f"{TOP}.sim.golden.layers" in modules
    imports, _ = read_imports(modules)
    assert len(imports) > 100     # the reader does see our imports


def test_layers():
    violations = check(ROOT)["layers"]
    assert not violations, _report(violations)


def test_no_import_cycle():
    violations = check(ROOT)["cycles"]
    assert not violations, _report(violations)


def test_no_private_name_from_another_module():
    violations = check(ROOT)["private"]
    assert not violations, _report(violations)


# -- the checker catches what it should, on a planted tree

def _tree(tmp_path: Path, files: dict[str, str]) -> Path:
    for sub in SUBPACKAGES:
        (tmp_path / sub).mkdir()
        (tmp_path / sub / "__init__.py").write_text("")
    for name, text in files.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return tmp_path


def test_checker_finds_planted_violations(tmp_path):
    root = _tree(tmp_path, {
        "hw/a.py": "from ..sim import b\n",                             # hw -> sim
        "hw/ok.py": "from .a import x\n",
        "sim/b.py": "def f():\n    from llmloom.perf import c\n",       # sim -> perf, deferred
        "perf/c.py": "import llmloom.flows.own\n",                       # perf -> flows
        "boards/e.py": "from ..sim.b import f\n",                        # boards -> sim
        "sim/golden/__init__.py": "",
        "sim/golden/p.py": "from . import q\n",                          # cycle p <-> q
        "sim/golden/q.py": "def g():\n    from .p import h\n",
        "flows/d.py": ("from ..sim.b import _hidden\n"                   # private import
                       "from ..perf import c\n"
                       "import llmloom.sim.b as bb\n"
                       "from llmloom.sim import b\n"
                       "import llmloom.hw.a\n"
                       "x = c._secret + bb._y + b._z + llmloom.hw.a._w\n"  # private attributes
                       "y = c.__doc__ + c.public\n"),                   # fine
        "flows/own.py": "def _mine(): pass\nfrom . import own\nown._mine()\n",  # own name: fine
        "bench/run.py": "from llmloom.perf.c import _fast\n",          # private, from a script
    })
    found = check(root)
    layers = {(v.module, v.line) for v in found["layers"]}
    assert layers == {("llmloom.hw.a", 1), ("llmloom.sim.b", 2), ("llmloom.perf.c", 1),
                      ("llmloom.boards.e", 1)}, _report(found["layers"])
    assert "nothing but flows imports flows" in str(
        next(v for v in found["layers"] if v.module == "llmloom.perf.c"))
    assert len(found["cycles"]) == 1, _report(found["cycles"])
    assert "llmloom.sim.golden.p, llmloom.sim.golden.q" in found["cycles"][0].what
    private = sorted(str(v) for v in found["private"])
    assert private == [
        "bench.run:1: imports private name '_fast' from llmloom.perf.c",
        "llmloom.flows.d:1: imports private name '_hidden' from llmloom.sim.b",
        "llmloom.flows.d:6: uses private name llmloom.hw.a._w",
        "llmloom.flows.d:6: uses private name llmloom.perf.c._secret",
        "llmloom.flows.d:6: uses private name llmloom.sim.b._y",
        "llmloom.flows.d:6: uses private name llmloom.sim.b._z",
    ], _report(found["private"])


def test_checker_passes_a_clean_tree(tmp_path):
    root = _tree(tmp_path, {
        "hw/a.py": "X = 1\n",
        "sim/b.py": "from ..hw.a import X\n",
        "perf/c.py": "from llmloom.hw import a\n",
        "boards/e.py": "from ..hw import a\n",
        "flows/d.py": "from ..sim import b\nfrom ..perf.c import a\nfrom . import own\n",
        "flows/own.py": "",
        "bench/run.py": "from llmloom.flows.d import b\n",
    })
    assert check(root) == {"layers": [], "cycles": [], "private": []}
