"""notebooks/retrain.ipynb runs top to bottom on a small sample, so it cannot rot.

The kernel is this test's own interpreter: ipykernel's kernelspec is installed into
a temporary prefix and put first on JUPYTER_PATH, so a "python3" kernelspec from
elsewhere on the machine (another Python, another venv) is never picked up. No
manual step is needed in a fresh venv with the test extra installed.
"""
from __future__ import annotations

import sys
from pathlib import Path

import nbformat
from ipykernel.kernelspec import install as install_kernelspec
from jupyter_client.kernelspec import KernelSpecManager
from nbclient import NotebookClient

NOTEBOOK = Path(__file__).resolve().parent.parent / "notebooks" / "retrain.ipynb"
SAMPLE_SIZE = 150
#: Seconds one cell may take before nbclient gives up (a hang guard, not a speed check).
CELL_TIMEOUT = 600


def code_cells(nb) -> list:
    return [c for c in nb.cells if c.cell_type == "code"]


def test_committed_notebook_has_no_outputs_and_a_parameters_cell():
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(nb)
    assert all(not c.outputs and c.execution_count is None for c in code_cells(nb))
    tagged = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1 and "SAMPLE_SIZE = None" in tagged[0].source and "DATA_PATH = None" in tagged[0].source


def test_notebook_runs_top_to_bottom_on_a_sample(tmp_path, monkeypatch):
    prefix = tmp_path / "jupyter"
    install_kernelspec(kernel_name="python3", prefix=str(prefix))
    monkeypatch.setenv("JUPYTER_PATH", str(prefix / "share" / "jupyter"))
    spec = KernelSpecManager().get_kernel_spec("python3")
    assert spec.argv[0] == sys.executable

    nb = nbformat.read(NOTEBOOK, as_version=4)
    at = next(i for i, c in enumerate(nb.cells) if "parameters" in c.metadata.get("tags", []))
    out_dir = tmp_path / "run"
    # what papermill does: a cell right after "parameters" that overrides them
    nb.cells.insert(at + 1, nbformat.v4.new_code_cell(f"SAMPLE_SIZE = {SAMPLE_SIZE}\nOUT_DIR = {str(out_dir)!r}"))
    nb.cells.append(nbformat.v4.new_code_cell("import sys\nprint(sys.executable)"))
    NotebookClient(nb, kernel_name="python3", timeout=CELL_TIMEOUT,
                   resources={"metadata": {"path": str(tmp_path)}}).execute()

    cells = code_cells(nb)
    errors = [o for c in cells for o in c.outputs if o.output_type == "error"]
    assert errors == []
    assert cells[-1].outputs[0].text.strip() == sys.executable
    assert f"{SAMPLE_SIZE} rows (" in "".join(o.get("text", "") for c in cells for o in c.outputs)
    assert (out_dir / "model" / "manifest.json").exists()
    assert (out_dir / "confusion_category.png").stat().st_size > 0
    images = [o for c in cells for o in c.outputs if "image/png" in o.get("data", {})]
    assert len(images) >= 2  # the label bar plots and the confusion matrix
    html = [o["data"]["text/html"] for c in cells for o in c.outputs if "text/html" in o.get("data", {})]
    assert any("clause accuracy" in h and "combined" in h for h in html)  # the evaluation table
    assert any("coverage" in h and "precision" in h for h in html)  # the rule report
