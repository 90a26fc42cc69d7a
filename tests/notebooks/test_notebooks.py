"""The notebooks run top to bottom (on a tiny study) so they never rot.

Each notebook is executed with nbclient in a ``python3`` kernel whose spec is written for the interpreter running
the tests (so the kernel imports the same environment, whatever kernels the user has registered), with the
repository root as working directory. ``study_figures`` and ``provenance`` read a tiny study made once per module
with :func:`govjax.study.pipeline.run_pipeline` on the prepared tiny dataset.
"""

import pathlib
import re

import nbformat
import pytest

from govjax.core.config import CanarySpec, GovernanceSpec, ModelSpec, TrainConfig
from govjax.study.methods import RunSpec, StudyConfig

ROOT = pathlib.Path(__file__).resolve().parents[2]
NOTEBOOKS = ROOT / "notebooks"
NAMES = ("quickstart", "study_figures", "provenance", "route_your_own_model")
CELL_TIMEOUT_S = 300


def tiny_study(data_dir) -> StudyConfig:
  base = TrainConfig(
      name="notebook-test", data_dir=str(data_dir), max_works=12,
      model=ModelSpec(num_layers=1, width=16, num_heads=2, context=32),
      governance=GovernanceSpec(scenario="default"), canaries=CanarySpec(count=1, repeats=(2,), frames=8),
      batch_size=4, num_steps=4, learning_rate=1e-2, warmup_steps=1, window_stride=32, eval_every=4,
      eval_max_batches=1, checkpoint_every=2, seed=0)
  return StudyConfig(name="notebook-test", base=base, runs=(RunSpec("vanilla"), RunSpec("depth")), audit_k=8,
                     audit_m=8, audit_max_windows_per_work=1, trace_methods=("depth",), trace_outputs=3, trace_k=16,
                     num_samples=1, lookup_works=2)


@pytest.fixture(scope="module")
def jupyter_path(tmp_path_factory):
  """A Jupyter data dir whose ``python3`` kernel runs this interpreter (put first on ``JUPYTER_PATH``)."""
  from ipykernel.kernelspec import write_kernel_spec

  data = tmp_path_factory.mktemp("jupyter")
  write_kernel_spec(data / "kernels" / "python3")
  return data


@pytest.fixture(scope="module")
def study_dir(prepared_data_dir, tmp_path_factory):
  from govjax.study.pipeline import run_pipeline

  out = tmp_path_factory.mktemp("notebook_study") / "study"
  run_pipeline(tiny_study(prepared_data_dir), out)
  return out


def execute(name: str, jupyter_path: pathlib.Path, monkeypatch) -> nbformat.NotebookNode:
  from nbclient import NotebookClient

  monkeypatch.setenv("JUPYTER_PATH", str(jupyter_path))
  monkeypatch.setenv("MPLBACKEND", "Agg")
  monkeypatch.chdir(ROOT)
  nb = nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)
  client = NotebookClient(nb, timeout=CELL_TIMEOUT_S, kernel_name="python3",
                          resources={"metadata": {"path": str(ROOT)}})
  client.execute()
  return nb


def stdout(nb: nbformat.NotebookNode) -> str:
  return "".join(out.get("text", "") for cell in nb.cells if cell.cell_type == "code" for out in cell.outputs
                 if out.output_type == "stream" and out.name == "stdout")


@pytest.mark.parametrize("name", NAMES)
def test_notebooks_are_stored_without_outputs(name):
  nb = nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)
  nbformat.validate(nb)
  assert nb.metadata.kernelspec.name == "python3"
  code = [cell for cell in nb.cells if cell.cell_type == "code"]
  assert code and all(not cell.outputs and cell.execution_count is None for cell in code)
  assert any(cell.cell_type == "markdown" for cell in nb.cells)


def test_quickstart(jupyter_path, monkeypatch):
  text = stdout(execute("quickstart", jupyter_path, monkeypatch))
  assert "group 0: |grad|^2 = 0.000e+00" in text
  assert re.search(r"with freeze_groups_without_contributors:\s+0\.000e\+00", text)


def test_route_your_own_model(jupyter_path, monkeypatch):
  text = stdout(execute("route_your_own_model", jupyter_path, monkeypatch))
  assert "sonata  CC-BY-NC-4.0  -> depth 1/3" in text and "song    MIT           -> exclude" in text
  for name in ("NNX depth", "Linen per_group"):
    error = float(re.search(rf"{name}: max \|routed - per-example reference\| = (\S+)", text).group(1))
    assert error < 1e-5
    assert f"{name}: barred layers' gradient change when restricted rows change: 0.000e+00" in text
  assert "routed_apply: group_mask must be [B, G] = [8, 3]" in text


def test_study_figures(study_dir, jupyter_path, monkeypatch):
  for name in ("extraction_over_training", "utility_vs_memorization"):
    (study_dir / "figures" / f"{name}.png").unlink()
  monkeypatch.setenv("GOVJAX_STUDY_DIR", str(study_dir))
  nb = execute("study_figures", jupyter_path, monkeypatch)
  text = stdout(nb)
  assert "vanilla-s0" in text and "depth-s0" in text and "extraction_over_training.png" in text
  assert (study_dir / "figures" / "extraction_over_training.png").is_file()
  assert (study_dir / "figures" / "utility_vs_memorization.png").is_file()
  images = [out for cell in nb.cells if cell.cell_type == "code" for out in cell.outputs
            if out.output_type == "display_data" and "image/png" in out.data]
  assert len(images) >= 2


def test_provenance(study_dir, jupyter_path, monkeypatch):
  run_dir = study_dir / "runs" / "depth-s0"
  monkeypatch.setenv("GOVJAX_RUN_DIR", str(run_dir))
  text = stdout(execute("provenance", jupyter_path, monkeypatch))
  assert "training windows of" in text and "source work ranked:" in text
  assert "sample.npy" in text and "attribution:" in text
  assert "window-" in text  # the lineage documents the study wrote
