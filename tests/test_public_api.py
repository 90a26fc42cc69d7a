"""The public API: `import govjax` is lazy, every public name resolves, is documented and listed in docs/API.md,
and the API page's example runs."""

import importlib
import importlib.metadata
import inspect
import pathlib
import re
import subprocess
import sys

import pytest

import govjax

ROOT = pathlib.Path(__file__).resolve().parents[1]
API_PAGE = ROOT / "docs" / "API.md"
PUBLIC_MODULES = ("govjax.routing", "govjax.routing.gate", "govjax.routing.groups", "govjax.routing.loss",
                  "govjax.routing.masks", "govjax.routing.protocol", "govjax.routing.transforms")
NAMES = [name for name in govjax.__all__ if name != "__version__"]


def test_import_is_lazy():
  code = ("import sys, govjax; heavy = [m for m in ('jax', 'flax', 'optax', 'numpy') if m in sys.modules]; "
          "print(heavy, len(dir(govjax)))")
  out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
  heavy, count = out.stdout.split("] ")
  assert heavy == "[" and int(count) >= len(govjax.__all__)


def test_public_names_resolve_with_docstrings():
  assert len(NAMES) >= 10 and "__version__" in govjax.__all__
  assert set(govjax.__all__) <= set(dir(govjax))
  for name in NAMES:
    obj = getattr(govjax, name)
    doc = inspect.getdoc(obj)
    assert doc and doc.strip().splitlines()[0], f"{name} has no docstring"
  assert govjax.routed_apply is importlib.import_module("govjax.routing.gate").routed_apply
  assert govjax.routing is importlib.import_module("govjax.routing")
  with pytest.raises(AttributeError, match="module 'govjax' has no attribute 'no_such_name'"):
    govjax.no_such_name  # noqa: B018


def test_version_and_typing_marker():
  assert govjax.__version__ == importlib.metadata.version("govjax")
  marker = ROOT / "govjax" / "py.typed"
  assert marker.is_file() and marker.read_text() == ""


def test_api_page_lists_every_public_name():
  rows = re.findall(r"^\| `([A-Za-z_]+)` \| (.+?) \|$", API_PAGE.read_text(), flags=re.MULTILINE)
  listed = {name: description for name, description in rows}
  assert set(listed) == set(govjax.__all__)
  assert all(len(description.split()) >= 3 for description in listed.values())


@pytest.mark.parametrize("module", PUBLIC_MODULES)
def test_public_modules_declare_all(module):
  mod = importlib.import_module(module)
  assert mod.__all__ and len(set(mod.__all__)) == len(mod.__all__)
  for name in mod.__all__:
    assert hasattr(mod, name), f"{module}.__all__ names missing {name}"


def test_api_page_example_runs():
  blocks = re.findall(r"```python\n(.*?)```", API_PAGE.read_text(), flags=re.DOTALL)
  assert blocks
  namespace: dict = {}
  exec(compile("\n".join(blocks), str(API_PAGE), "exec"), namespace)  # noqa: S102
  assert namespace["per_example"].shape == (4,)
