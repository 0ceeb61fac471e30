"""Running the project's notebooks headlessly (papermill) with a named parameter set.

``params/ci.yaml`` is the tiny CPU setting CI uses; ``params/full.yaml`` the paper setting. Both are one
flat vocabulary shared by all notebooks; :func:`run_notebook` passes each notebook only the keys its
``parameters`` cell declares (papermill's CLI passes all of them and warns about the rest).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import yaml

from .errors import DlzoError
from .paths import repo_root


def project_root() -> Path:
    root = repo_root()
    if root is None:
        raise DlzoError("This command needs a dlzo checkout (with notebooks/ and params/); run it from inside one.")
    return root


def notebook_paths() -> list[Path]:
    """The ordered notebooks under ``notebooks/`` (CI snapshots excluded)."""
    return sorted((project_root() / "notebooks").glob("[0-9][0-9]_*.ipynb"))


def find_notebook(name: str) -> Path:
    for path in notebook_paths():
        if path.stem == name or path.stem.startswith(name + "_") or path.name == name:
            return path
    names = ", ".join(p.stem for p in notebook_paths())
    raise DlzoError(f"No notebook called {name!r}; choose one of {names}.")


def load_params(params: str | Path) -> dict:
    """``"ci"``, ``"full"`` or a path to a YAML file of notebook parameters."""
    path = project_root() / "params" / f"{params}.yaml" if params in ("ci", "full") else Path(params)
    if not path.is_file():
        raise DlzoError(f"Parameter file {str(path)!r} does not exist; use 'ci', 'full' or a YAML path.")
    data = yaml.safe_load(path.read_text()) or {}
    if not isinstance(data, dict):
        raise DlzoError(f"{path} must hold a mapping of parameter names to values.")
    return data


def declared_parameters(path: Path) -> set[str]:
    import papermill

    return set(papermill.inspect_notebook(str(path)))


def failed_cell_sentence(stem: str, failure, kept: Path | None = None) -> str:
    """One sentence for a notebook whose cell raised: a user error (DlzoError) is its own sentence, anything
    else names the cell and the exception, and where the executed notebook with the traceback was kept."""
    if failure.ename == "DlzoError":
        return f"{stem}: {failure.evalue}"
    where = f"; the executed notebook with the traceback is {kept}" if kept else ""
    return f"{stem} stopped in cell {failure.exec_count} with {failure.ename}: {failure.evalue}{where}."


def _keep_failed(executed: str, source: Path) -> Path | None:
    """Copy a failed run's notebook out of the project (never beside the committed ones) for debugging."""
    if not os.path.exists(executed) or os.path.getsize(executed) == 0:
        return None
    kept = Path(tempfile.gettempdir()) / f"{source.stem}.failed.ipynb"
    shutil.copyfile(executed, kept)
    return kept


def run_notebook(name: str | Path, params: str | Path | dict = "ci", output: str | Path | None = None,
                 timeout: int = 3600, overrides: dict | None = None, progress: bool = False) -> Path:
    """Execute a notebook with papermill and the given parameter set; return the executed notebook's path.

    The paired ``.py`` (jupytext py:percent) is the source when it exists, so the executed notebook always
    reflects the reviewed script. The output is written to a temporary file first and moved into place only
    when execution succeeded, so a failed run never leaves a half-written notebook behind.
    """
    import jupytext
    import papermill

    source = Path(name) if Path(name).suffix == ".ipynb" else find_notebook(str(name))
    values = dict(params) if isinstance(params, dict) else load_params(params)
    values.update(overrides or {})
    declared = declared_parameters(source)
    chosen = {k: v for k, v in values.items() if k in declared}
    target = Path(output) if output is not None else source
    target.parent.mkdir(parents=True, exist_ok=True)
    env_backend = os.environ.pop("MPLBACKEND", None)  # an Agg backend would drop the inline figures
    fd, tmp = tempfile.mkstemp(suffix=".ipynb", dir=target.parent)
    os.close(fd)
    paired = source.with_suffix(".py")
    fd_in, tmp_in = tempfile.mkstemp(suffix=".ipynb", dir=target.parent)
    os.close(fd_in)
    try:
        if paired.is_file():
            jupytext.write(jupytext.read(paired), tmp_in, fmt="ipynb")
        else:
            shutil.copyfile(source, tmp_in)
        try:
            papermill.execute_notebook(
                tmp_in, tmp, parameters=chosen, kernel_name="python3", cwd=str(source.parent),
                execution_timeout=timeout, progress_bar=progress, log_output=False,
            )
        except papermill.PapermillExecutionError as failure:
            raise DlzoError(failed_cell_sentence(source.stem, failure, kept=_keep_failed(tmp, source))) from None
        shutil.move(tmp, target)
    finally:
        for leftover in (tmp, tmp_in):
            if os.path.exists(leftover):
                os.unlink(leftover)
        if env_backend is not None:
            os.environ["MPLBACKEND"] = env_backend
    return target
