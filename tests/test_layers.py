"""The layering rules that `lint-imports` does not check: imports inside functions need a stated reason."""

import ast
import pathlib
import re

import govjax

ROOT = pathlib.Path(govjax.__file__).parent
REASON = re.compile(r"#.*\(.+\)")  # e.g. `# noqa: PLC0415 (music21 takes seconds to import)`


def _function_imports():
  for path in sorted(ROOT.rglob("*.py")):
    lines = path.read_text().splitlines()
    for node in ast.walk(ast.parse("\n".join(lines))):
      if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
        for inner in ast.walk(node):
          if isinstance(inner, ast.Import | ast.ImportFrom):
            yield path.relative_to(ROOT.parent), inner.lineno, lines[inner.end_lineno - 1]


def test_imports_inside_functions_are_optional_dependencies_with_a_reason():
  found = list(_function_imports())
  bad = [f"{path}:{line}: {text.strip()}" for path, line, text in found if not REASON.search(text)]
  assert not bad, "imports inside functions need a trailing comment giving the reason:\n" + "\n".join(bad)
  own = [f"{path}:{line}" for path, line, text in found if re.search(r"\b(from|import) govjax\b", text)]
  assert not own, "govjax modules are imported at module level (the layers make that possible): " + ", ".join(own)
