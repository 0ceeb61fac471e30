"""Notebooks: paired .py in sync, a papermill run of each with params/ci.yaml, committed outputs present.

nbval (run by .ci/run on notebooks/ci/*.ipynb with --nbval-lax) compares the tagged summary cells of the
CI snapshots; this file checks that those snapshots exist and were made from the current notebooks.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import jupytext
import nbformat
import pytest

from dlzo.notebooks import declared_parameters, load_params, notebook_paths, run_notebook

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = notebook_paths()
IDS = [p.stem for p in NOTEBOOKS]


def code_and_markdown(nb) -> list[tuple[str, str]]:
    return [(c.cell_type, c.source.strip()) for c in nb.cells
            if "injected-parameters" not in c.metadata.get("tags", [])]


def test_there_are_notebooks():
    assert [p.stem[:2] for p in NOTEBOOKS] == sorted(p.stem[:2] for p in NOTEBOOKS) and "01_discovery" in IDS


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_paired_py_is_in_sync(path):
    paired = path.with_suffix(".py")
    assert paired.is_file(), f"{paired.name} missing: run jupytext --sync {path}"
    assert code_and_markdown(jupytext.read(paired)) == code_and_markdown(jupytext.read(path)), (
        f"{path.name} and {paired.name} differ: run `jupytext --sync {paired}`")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_parameters_cell_and_param_files(path):
    nb = nbformat.read(path, as_version=4)
    tagged = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1, "exactly one cell tagged 'parameters'"
    declared = declared_parameters(path)
    assignments = [line for line in tagged[0].source.splitlines() if re.match(r"^\w+\s*(:[^=]+)?=", line)]
    assert len(declared) == len(assignments), "papermill could not parse every parameter line"
    assert {"progress", "threads", "output_dir"} <= declared
    for kind in ("ci", "full"):
        assert set(load_params(kind)) & declared, f"params/{kind}.yaml sets nothing for {path.name}"
    assert nb.metadata.kernelspec.name == "python3"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_committed_notebook_carries_outputs_of_a_real_run(path):
    nb = nbformat.read(path, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(c.execution_count for c in code), "every code cell executed"
    assert not any(o.get("output_type") == "error" for c in code for o in c.outputs)
    text = json.dumps([o for c in code for o in c.outputs])
    assert "device:" in text, "the run names its device"
    assert any("image/png" in o.get("data", {}) for c in code for o in c.outputs), "figures inline as PNG"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_ci_snapshot_matches_the_notebook(path):
    snapshot = ROOT / "notebooks" / "ci" / path.name
    assert snapshot.is_file(), f"missing CI snapshot: dlzo notebooks {path.stem} --params ci"
    assert code_and_markdown(nbformat.read(snapshot, as_version=4)) == code_and_markdown(
        nbformat.read(path, as_version=4)), f"stale CI snapshot: rerun dlzo notebooks {path.stem} --params ci"


@pytest.mark.notebook
@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_notebook_executes_with_ci_parameters(path, tmp_path):
    executed = run_notebook(path, params="ci", output=tmp_path / path.name, timeout=900)
    nb = nbformat.read(executed, as_version=4)
    assert nb.metadata.papermill.parameters["progress"] is False
    figures = ROOT / load_params("ci")["output_dir"] / "figures"
    assert any(figures.glob(f"{path.stem[:3]}*.png")), "the notebook saved its figures"


@pytest.mark.notebook
def test_a_user_error_in_a_notebook_shows_one_sentence(tmp_path):
    """After ``dlzo.notebook.setup()``, a DlzoError fails its cell (papermill stops) with the sentence alone."""
    import papermill

    nb = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_code_cell("from dlzo.notebook import setup\nfrom dlzo.errors import DlzoError\n"
                                  "env = setup(progress=False)"),
        nbformat.v4.new_code_cell("raise DlzoError('The grid has no runs yet; run dlzo sweep first.')"),
        nbformat.v4.new_code_cell("never = True"),
    ])
    nb.metadata.kernelspec = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, tmp_path / "in.ipynb")
    with pytest.raises(papermill.PapermillExecutionError) as failure:
        papermill.execute_notebook(tmp_path / "in.ipynb", tmp_path / "out.ipynb", kernel_name="python3",
                                   progress_bar=False)
    assert failure.value.ename == "DlzoError" and failure.value.exec_count == 2
    out = nbformat.read(tmp_path / "out.ipynb", as_version=4)
    error = next(o for c in out.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error")
    assert error.traceback == ["DlzoError: The grid has no runs yet; run dlzo sweep first."]


@pytest.mark.notebook
def test_run_notebook_turns_a_failed_cell_into_one_sentence_and_writes_nothing(tmp_path):
    """``dlzo notebooks`` ends in one sentence, not papermill's traceback: a DlzoError is its own sentence; any
    other exception names the cell, and the executed notebook is kept outside the project for debugging."""
    from dlzo.errors import DlzoError

    def notebook(name, failing):
        nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("from dlzo.errors import DlzoError"),
                                             nbformat.v4.new_code_cell(failing)])
        nb.metadata.kernelspec = {"name": "python3", "display_name": "Python 3", "language": "python"}
        nbformat.write(nb, tmp_path / f"{name}.ipynb")
        return tmp_path / f"{name}.ipynb"

    user = notebook("user", "raise DlzoError('Model x is not installed: run `pip install x`.')")
    with pytest.raises(DlzoError) as failure:
        run_notebook(user, params={}, output=tmp_path / "out" / "user.ipynb", progress=False)
    assert str(failure.value) == "user: Model x is not installed: run `pip install x`."
    bug = notebook("bug", "1 / 0")
    with pytest.raises(DlzoError, match=r"bug stopped in cell 2 with ZeroDivisionError: division by zero; the "
                                        r"executed notebook with the traceback is .*bug\.failed\.ipynb\.") as failure:
        run_notebook(bug, params={}, output=tmp_path / "out" / "bug.ipynb", progress=False)
    kept = Path(str(failure.value).rsplit(" is ", 1)[1].rstrip("."))
    assert "ZeroDivisionError" in kept.read_text() and not kept.is_relative_to(ROOT)
    assert list((tmp_path / "out").iterdir()) == []  # no half-written notebook where the output was to go


def test_user_error_traceback_is_the_sentence():
    from dlzo.errors import DlzoError
    from dlzo.notebook import user_error_traceback

    assert user_error_traceback(None, DlzoError, DlzoError("Pass a layer below 30."), None) == [
        "DlzoError: Pass a layer below 30."]


def test_setup_seeds_every_generator_a_figure_draws_from():
    import random

    import numpy as np

    from dlzo.notebook import setup

    draws = []
    for _ in range(2):
        setup(progress=True)
        draws.append((np.random.rand(), random.random()))
    assert draws[0] == draws[1]  # e.g. seaborn's strip-plot jitter: the same figure bytes on every run
