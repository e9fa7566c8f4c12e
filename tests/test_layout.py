"""The house rules of the layout, checked on the source text: imports flow models <- fraud <- streaming, the product
never imports the benchmarks (the CLI, ``fraud/cli.py`` and ``fraud/commands/``, is the one entry point above
them all: it runs the scorer and ``fraud bench ...``), ``mlflow/`` is not a package (it would shadow the library), module docstrings say
what and why in at most 30 lines, and the scorer's loop stays small."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PRODUCT = ("models", "fraud", "streaming")
#: packages each product package must not import
FORBIDDEN = {"models": {"fraud", "streaming", "benchmarks"}, "fraud": {"streaming", "benchmarks"},
             "streaming": {"benchmarks"}}


ENTRY_POINTS = ("fraud/cli.py", "fraud/commands/")


def _modules(*packages):
    for pkg in packages:
        yield from sorted((ROOT / pkg).rglob("*.py"))


def _is_entry_point(p: Path) -> bool:
    return p.relative_to(ROOT).as_posix().startswith(ENTRY_POINTS)


def _imported_roots(tree: ast.AST) -> set[str]:
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            out.add(node.module.split(".")[0])
    return out


@pytest.mark.parametrize("pkg", PRODUCT)
def test_imports_flow_one_way(pkg):
    bad = {str(p.relative_to(ROOT)): sorted(_imported_roots(ast.parse(p.read_text())) & FORBIDDEN[pkg])
           for p in _modules(pkg) if not _is_entry_point(p)}
    assert not {k: v for k, v in bad.items() if v}, f"{pkg}/ imports what it must not (models <- fraud <- streaming)"


def test_mlflow_folder_is_not_a_package():
    """Only the top file matters: the local store under mlflow/ holds logged models' code (their __init__.py
    files), which cannot make ``mlflow`` a package."""
    assert not (ROOT / "mlflow" / "__init__.py").exists(), "mlflow/__init__.py would shadow the mlflow library"


def test_module_docstrings_are_short():
    long = {}
    for p in _modules(*PRODUCT, "benchmarks"):
        doc = ast.get_docstring(ast.parse(p.read_text()), clean=False)
        if doc and doc.count("\n") + 1 > 30:
            long[str(p.relative_to(ROOT))] = doc.count("\n") + 1
    assert not long, f"module docstrings over 30 lines (figures and history belong in docs/): {long}"


def test_the_scorer_loop_stays_small():
    n = len((ROOT / "streaming" / "loop.py").read_text().splitlines())
    assert n < 400, f"streaming/loop.py has {n} lines: move a concept into its own module"
