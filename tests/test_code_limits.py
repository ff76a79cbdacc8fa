"""Limits on the size of the package's functions: at most 60 lines (docstring aside) and 5 positional parameters.

A longer function does several jobs, and a call with more than five positional arguments is read by
counting; split the function into named helpers, or make the options keyword-only (after ``*``).
"""

from __future__ import annotations

import ast
import tomllib
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "gene_dag"
MAX_LINES = 60
MAX_POSITIONAL = 5


def _functions(tree: ast.AST):
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            yield node


def _n_lines(node: ast.FunctionDef | ast.AsyncFunctionDef) -> int:
    """Lines from the ``def`` (decorators excluded) to the function's last line, less its docstring.

    The docstring is not counted: a public function's numpy docstring documents every parameter,
    and that length is wanted.
    """
    n = node.end_lineno - node.lineno + 1
    first = node.body[0]
    if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) and isinstance(first.value.value, str):
        n -= first.end_lineno - first.lineno + 1
    return n


def _n_positional(node: ast.FunctionDef | ast.AsyncFunctionDef, *, in_class: bool) -> int:
    """Positional-only and positional-or-keyword parameters; ``self``/``cls`` of a method are not counted."""
    names = [a.arg for a in node.args.posonlyargs + node.args.args]
    is_static = any(isinstance(d, ast.Name) and d.id == "staticmethod" for d in node.decorator_list)
    if in_class and not is_static and names and names[0] in ("self", "cls"):
        names = names[1:]
    return len(names)


def offenders(root: Path = SRC) -> list[str]:
    """Every function under ``root`` over a limit, as ``file:line name: what``."""
    found = []
    for path in sorted(root.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        methods = {
            id(item)
            for cls in ast.walk(tree)
            if isinstance(cls, ast.ClassDef)
            for item in cls.body
            if isinstance(item, ast.FunctionDef | ast.AsyncFunctionDef)
        }
        where = path.relative_to(root.parents[1])
        for node in _functions(tree):
            problems = []
            if (n := _n_lines(node)) > MAX_LINES:
                problems.append(f"{n} lines > {MAX_LINES}")
            if (n := _n_positional(node, in_class=id(node) in methods)) > MAX_POSITIONAL:
                problems.append(f"{n} positional parameters > {MAX_POSITIONAL}")
            if problems:
                found.append(f"{where}:{node.lineno} {node.name}: {', '.join(problems)}")
    return found


def test_no_function_in_src_is_too_long_or_has_too_many_positional_parameters():
    found = offenders()
    assert not found, f"{len(found)} function(s) over the limits:\n" + "\n".join(found)


def test_the_check_finds_long_functions_and_positional_parameters(tmp_path):
    """The check itself: what it must report and what it must not (keyword-only options, self, 60 lines)."""
    pkg = tmp_path / "src" / "pkg"
    pkg.mkdir(parents=True)
    body_60 = "\n".join(f"    x{i} = {i}" for i in range(59))  # def line + 59 = 60 lines
    body_61 = "\n".join(f"    x{i} = {i}" for i in range(60))
    (pkg / "mod.py").write_text(
        f"def ok_60():\n{body_60}\n\n"
        f'def documented_60():\n    """Summary.\n\n    More.\n    """\n{body_60}\n\n'
        f"def long_61():\n{body_61}\n\n"
        "def five(a, b, c, d, e, *, f=1, g=2, h=3):\n    pass\n\n"
        "def six(a, b, /, c, d, e, f):\n    pass\n\n"
        "class C:\n"
        "    def method(self, a, b, c, d, e):\n        pass\n\n"
        "    @staticmethod\n"
        "    def static(self, a, b, c, d, e):\n        pass\n\n"
        "    def outer(self):\n"
        "        def inner(a, b, c, d, e, f):\n            pass\n"
    )
    found = offenders(pkg)
    assert found == [
        "src/pkg/mod.py:127 long_61: 61 lines > 60",
        "src/pkg/mod.py:192 six: 6 positional parameters > 5",
        "src/pkg/mod.py:200 static: 6 positional parameters > 5",
        "src/pkg/mod.py:204 inner: 6 positional parameters > 5",
    ], found


def test_positional_limit_matches_ruff_configuration():
    """pyproject.toml's ruff max-positional-args is the limit checked here (ruff has no function-length rule)."""
    pylint = tomllib.loads((SRC.parents[1] / "pyproject.toml").read_text())["tool"]["ruff"]["lint"]["pylint"]
    assert pylint["max-positional-args"] == MAX_POSITIONAL
