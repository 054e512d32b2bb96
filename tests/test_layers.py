"""The package's layers point one way (DESIGN: cli → workflows → reports → stages → io →
specs/config → errors), and no two packages import each other, directly or through others.

Written as a test over the source (``ast``), so it runs in ``make test`` without a tool.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "bids_recon"
# Top to bottom; a package may import from its own layer or any layer below.
LAYERS = [
    {"cli", "features_cli", "__main__", "simulate"},
    {"workflows"},
    {"reports"},
    {"decoding", "recon", "features", "fmri", "evaluation", "memory", "runtime"},
    {"io"},
    {"specs", "config", "options"},
    {"errors", "log", "_toml", "__init__"},
]
RANK = {name: k for k, layer in enumerate(LAYERS) for name in layer}


def top_package(module: str) -> str:
    """``bids_recon.io.outputs`` → ``io``; ``bids_recon`` → ``__init__``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def import_graph() -> dict[str, set[tuple[str, str]]]:
    """Package → {(imported package, importing file)} over every module of bids_recon."""
    graph: dict[str, set[tuple[str, str]]] = defaultdict(set)
    for path in PACKAGE.rglob("*.py"):
        relative = path.relative_to(PACKAGE.parent).with_suffix("")
        source = top_package(".".join(relative.parts))
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = []
            if isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            elif isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            for name in names:
                if name.split(".")[0] == "bids_recon":
                    target = top_package(name)
                    if target != source:
                        graph[source].add((target, str(path.relative_to(PACKAGE.parent))))
    return graph


def test_every_package_has_a_layer():
    packages = {p.name for p in PACKAGE.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    modules = {p.stem for p in PACKAGE.glob("*.py")}
    assert (packages | modules) - set(RANK) == set()


def test_no_import_goes_up_a_layer():
    upward = sorted(
        f"{where}: {source} imports {target}"
        for source, edges in import_graph().items()
        for target, where in edges
        if RANK[target] < RANK[source]
    )
    assert not upward, upward


def test_no_cycles_between_packages():
    graph = {source: {target for target, _ in edges} for source, edges in import_graph().items()}

    def reaches(start: str, goal: str, seen: set[str]) -> bool:
        for nxt in graph.get(start, ()):
            if nxt == goal or (nxt not in seen and reaches(nxt, goal, seen | {nxt})):
                return True
        return False

    cycles = sorted(p for p in graph if reaches(p, p, {p}))
    assert not cycles, cycles
