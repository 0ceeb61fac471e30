"""Declarative experiment grids that run resumably into one tidy results table.

A grid is models × tasks × methods × seeds × (per-method) lr grid. Each run is a :class:`RunConfig`
with a stable key; finished runs are appended as one JSON line each to a shard file of a results
folder (``results/<sweep>/shard-<i>.jsonl``), so a sweep killed at any point resumes where it stopped,
and several processes (``shard=(i, n)``, or all runs with a shared ``claims`` folder) can fill one GPU side
by side without sharing a file.

A grid with ``lr_search_seeds`` searches each method's lr grid on those seeds only (MeZO's protocol): the
other seeds run only the lr picked on dev from the search seeds' rows (:func:`plan_lr_search`), and
:func:`run_grid` starts them as soon as their cell's search runs have finished.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
import warnings
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import pandas as pd

from .errors import DlzoError
from .progress import progress_bar


@dataclass(frozen=True)
class RunConfig:
    """One training run. ``method`` names a recipe known to the runner; ``options`` refines it."""

    model: str
    task: str
    method: str
    seed: int = 0
    lr: float = 0.0
    eps: float = 1e-3
    steps: int = 1000
    batch_size: int = 16
    eval_every: int = 250
    options: tuple = field(default_factory=tuple)  # sorted (key, value) pairs, hashable

    @staticmethod
    def make(model: str, task: str, method: str, options: dict | None = None, **kwargs) -> RunConfig:
        opts = tuple(sorted((options or {}).items()))
        return RunConfig(model=model, task=task, method=method, options=opts, **kwargs)

    @property
    def opts(self) -> dict:
        return dict(self.options)

    def as_dict(self) -> dict:
        d = asdict(self)
        d["options"] = json.dumps(self.opts, sort_keys=True)
        return d

    @property
    def key(self) -> str:
        text = json.dumps(self.as_dict(), sort_keys=True)
        return hashlib.sha1(text.encode()).hexdigest()[:16]


def expand_grid(models: Iterable[str], tasks: Iterable[str], methods: dict[str, dict], seeds: Iterable[int],
                layers_of: Callable[[str], int] | None = None, **common) -> list[RunConfig]:
    """All runs of a grid. ``methods`` maps a method label to its settings: ``lr`` (a number or a list, the lr
    grid), optional ``eps``, ``steps``, ``batch_size``, ``eval_every``, ``recipe`` (the method recipe, default:
    the label), ``each_layer: true`` (one run per decoder layer, ``options.layers = [i]``; needs
    ``layers_of(model) -> number of layers``), and any other key (kept as options)."""
    runs = []
    fields = {"eps", "steps", "batch_size", "eval_every"}
    for model in models:
        for task in tasks:
            for label, spec in methods.items():
                spec = dict(spec or {})
                lrs = spec.pop("lr", [0.0])
                lrs = lrs if isinstance(lrs, (list, tuple)) else [lrs]
                settings = {**common, **{k: spec.pop(k) for k in list(spec) if k in fields}}
                variants = [spec]
                if spec.pop("each_layer", False):
                    if layers_of is None:
                        raise DlzoError(f"Method {label!r} asks for each_layer; the grid needs the models' layer counts.")
                    variants = [{**spec, "layers": [i]} for i in range(layers_of(model))]
                for options in variants:
                    for seed in seeds:
                        for lr in lrs:
                            runs.append(RunConfig.make(model, task, label, options=options, seed=int(seed),
                                                       lr=float(lr), **settings))
    keys = [r.key for r in runs]
    if len(set(keys)) != len(keys):
        raise DlzoError("The grid lists the same run twice; make method names or settings distinct.")
    return runs


def load_grid(path: str | Path) -> dict:
    """Read a grid YAML: ``name``, ``models``, ``tasks``, ``seeds``, ``methods`` and common run settings
    (``steps``, ``batch_size``, ``eval_every``, ``eps``)."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise DlzoError(f"The grid file {str(path)!r} does not exist; pass a YAML file like experiments/*.yaml.")
    try:
        grid = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise DlzoError(f"The grid file {path} is not valid YAML ({str(exc).splitlines()[0]}).") from None
    missing = [k for k in ("name", "models", "tasks", "seeds", "methods") if k not in (grid or {})]
    if missing:
        raise DlzoError(f"The grid file {path} lacks {', '.join(missing)}; see experiments/README.md.")
    grid_search_seeds(grid, where=f"The grid file {path}")
    return grid


def grid_search_seeds(grid: dict, where: str = "The grid") -> list[int] | None:
    """The grid's ``lr_search_seeds`` (the seeds that run a method's whole lr grid; the other seeds run only
    the lr picked on their dev scores), or None when the grid has no such key (every seed runs every lr).
    Raises :class:`DlzoError` when the key is not a non-empty list of the grid's seeds."""
    if grid.get("lr_search_seeds") is None:
        return None
    chosen = grid["lr_search_seeds"]
    if (not isinstance(chosen, (list, tuple)) or not chosen
            or not all(isinstance(s, int) and not isinstance(s, bool) for s in chosen)):
        raise DlzoError(f"{where}'s lr_search_seeds must be a non-empty list of seeds (integers) such as [0], "
                        f"not {chosen!r}.")
    outside = sorted(set(chosen) - {int(s) for s in grid.get("seeds", [])})
    if outside:
        raise DlzoError(f"{where}'s lr_search_seeds lists seed{'s' if len(outside) > 1 else ''} "
                        f"{', '.join(map(str, outside))} that its seeds do not; use some of its seeds "
                        f"{list(grid.get('seeds', []))}.")
    return [int(s) for s in dict.fromkeys(chosen)]


def grid_runs(grid: dict, layers_of: Callable[[str], int] | None = None) -> list[RunConfig]:
    """The runs of a loaded grid; methods without ``lr``/``eps`` get their recipe's lr grid and ε."""
    from .recipes import with_recipe_defaults

    common = {k: grid[k] for k in ("steps", "batch_size", "eval_every") if k in grid}
    methods = with_recipe_defaults(grid["methods"])
    if "eps" in grid:  # a grid-wide ε overrides the recipes' defaults, a method's own ε overrides both
        methods = {label: {**spec, "eps": grid["methods"][label].get("eps", grid["eps"])} if "eps" in spec else spec
                   for label, spec in methods.items()}
    return expand_grid(grid["models"], grid["tasks"], methods, grid["seeds"], layers_of=layers_of, **common)


def cell_of(config: RunConfig) -> tuple:
    """The lr-selection cell of a run: every setting but ``seed`` and ``lr`` (model, task, method label,
    options such as an each-layer method's ``layers``, ε, steps, batch size, eval_every), hashable."""
    return tuple((k, v) for k, v in sorted(config.as_dict().items()) if k not in ("seed", "lr"))


@dataclass
class LrSearchPlan:
    """Which runs of a grid with ``lr_search_seeds`` may start now, given the finished rows.

    ``ready``: the runs to run (or already run), in the grid's order: every run of a cell with one lr, the
    search seeds' runs at every lr, and the other seeds' runs at the ``chosen`` lr of decided cells.
    ``held``: one placeholder per other seed of each undecided cell (``lr=nan``, never run; their keys match
    no row), so ``ready + held`` (:attr:`planned`) counts every run the grid will have.
    ``chosen``: cell (:func:`cell_of`) -> lr picked on dev from the search seeds' rows.
    ``pending``: undecided cells whose search runs may still finish; ``undecidable``: undecided cells whose
    every search run is finished or failed, one at least failed (their held-back runs cannot start in this
    sweep). ``search``: cell -> its search runs (every lr on the search seeds), for the cells with several lrs.
    """

    ready: list[RunConfig]
    held: list[RunConfig]
    chosen: dict[tuple, float]
    pending: set[tuple]
    undecidable: set[tuple]
    search: dict[tuple, list[RunConfig]]

    @property
    def planned(self) -> list[RunConfig]:
        """Every run the grid will have: the ready ones and the held-back placeholders."""
        return self.ready + self.held

    def held_in(self, cells: set[tuple]) -> int:
        """How many held-back runs belong to ``cells`` (e.g. :attr:`undecidable`)."""
        return sum(cell_of(r) in cells for r in self.held)


def plan_lr_search(runs: list[RunConfig], search_seeds: Iterable[int] | None, rows: Iterable[dict],
                   failed: Iterable[str] = (), by: str = "dev_score",
                   higher_is_better: bool | None = None) -> LrSearchPlan:
    """Split a grid's ``runs`` (:func:`grid_runs`) into the ready and the held-back ones, given the finished
    ``rows`` of its results folder and the keys of runs that ``failed`` in this sweep.

    A cell (:func:`cell_of`) with more than one lr runs every lr on ``search_seeds``; on its other seeds it runs
    only the lr chosen as :func:`select_lr` chooses (best mean ``by`` over the search seeds' rows, ties to the
    smaller lr), once every search run of the cell has a row. Until then the other seeds' runs are held back.
    ``search_seeds=None`` makes every run ready (the plain grid).
    """
    if search_seeds is None:
        return LrSearchPlan(list(runs), [], {}, set(), set(), {})
    search_seeds, failed = set(search_seeds), set(failed)
    cells: dict[tuple, list[RunConfig]] = {}
    for run in runs:
        cells.setdefault(cell_of(run), []).append(run)
    staged = {cell for cell, members in cells.items()
              if len({r.lr for r in members}) > 1 and any(r.seed in search_seeds for r in members)}
    search = {cell: [r for r in cells[cell] if r.seed in search_seeds] for cell in staged}
    by_key = {row["key"]: row for row in rows if "key" in row}
    decided = [cell for cell in staged if all(r.key in by_key for r in search[cell])]
    chosen: dict[tuple, float] = {}
    if decided:
        ids = {cell: i for i, cell in enumerate(decided)}
        df = pd.DataFrame([{"cell": ids[cell], "lr": r.lr, by: by_key[r.key].get(by)}
                           for cell in decided for r in search[cell]])
        df[by] = pd.to_numeric(df[by], errors="coerce")
        best = _best_lrs(df, by, ["cell"], higher_is_better)
        chosen = {decided[int(cell)]: float(lr) for cell, lr in zip(best["cell"], best["lr"], strict=True)}
    undecidable = {cell for cell in staged if cell not in chosen
                   and all(r.key in by_key or r.key in failed for r in search[cell])}
    pending = staged - set(chosen) - undecidable
    ready, held, placed = [], [], set()
    for run in runs:
        cell = cell_of(run)
        if cell not in staged or run.seed in search_seeds or chosen.get(cell) == run.lr:
            ready.append(run)
        elif cell not in chosen and (cell, run.seed) not in placed:
            placed.add((cell, run.seed))
            held.append(replace(run, lr=float("nan")))
    return LrSearchPlan(ready, held, chosen, pending, undecidable, search)


def planned_runs(grid: dict, rows: Iterable[dict] = (), layers_of: Callable[[str], int] | None = None) -> list[RunConfig]:
    """The runs a loaded grid will have given its finished ``rows``: :func:`grid_runs` for a plain grid; with
    ``lr_search_seeds``, the ready runs and one ``lr=nan`` placeholder per held-back run
    (:attr:`LrSearchPlan.planned`; e.g. for :func:`dlzo.main_results.coverage`)."""
    runs = grid_runs(grid, layers_of=layers_of)
    return plan_lr_search(runs, grid_search_seeds(grid), rows).planned


class ResultsStore:
    """A folder of JSONL shards holding one row per finished run (keyed by ``RunConfig.key``)."""

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)

    def _shards(self) -> list[Path]:
        return sorted(self.folder.glob("shard-*.jsonl")) if self.folder.is_dir() else []

    def rows(self) -> list[dict]:
        rows = []
        for shard in self._shards():
            for number, line in enumerate(shard.read_text().splitlines(), 1):
                if not line.strip():
                    continue
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError:
                    warnings.warn(f"skipping a torn line {shard.name}:{number} (a run killed mid-write)", stacklevel=2)
        return rows

    def done_keys(self) -> set[str]:
        return {row["key"] for row in self.rows() if "key" in row}

    def table(self) -> pd.DataFrame:
        rows = self.rows()
        return pd.DataFrame(rows) if rows else pd.DataFrame()

    def adopt(self, source: str | Path, keys: set[str]) -> int:
        """Copy into this store the rows of another results folder whose run is one of ``keys`` and not done
        here yet (a run key fixes every setting of a run, so a finished run of another grid with the same key
        is a finished run of this one). Returns how many rows were copied."""
        source = ResultsStore(source)
        if not source._shards():
            raise DlzoError(f"{str(source.folder)!r} holds no results shards (shard-*.jsonl); pass the results "
                            "folder of a grid, e.g. results/main_core_smollm2.")
        done = self.done_keys()
        copied = 0
        for row in source.rows():
            key = row.get("key")
            if key in keys and key not in done:
                self.append(row)
                done.add(key)
                copied += 1
        return copied

    def record_failure(self, config: RunConfig, error: BaseException) -> None:
        """Note a run that failed (``failed.jsonl``, not a results shard) and warn with its first line."""
        message = str(error).strip().splitlines()[0] if str(error).strip() else ""
        text = f"{type(error).__name__}: {message}" if not isinstance(error, DlzoError) else message
        self.folder.mkdir(parents=True, exist_ok=True)
        with (self.folder / "failed.jsonl").open("a") as handle:
            handle.write(json.dumps({**config.as_dict(), "key": config.key, "error": text,
                                     "time": time.strftime("%Y-%m-%dT%H:%M:%S")}, sort_keys=True) + "\n")
        warnings.warn(f"dlzo: run {config.key} ({config.method}, {config.task}, seed {config.seed}) failed: {text}; "
                      "going on with the next run.", stacklevel=3)

    def append(self, row: dict, shard: int = 0) -> None:
        """Append one row durably (flush + fsync), starting a new line if a torn one precedes it."""
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.folder / f"shard-{shard}.jsonl"
        needs_newline = path.is_file() and path.stat().st_size > 0 and not path.read_bytes().endswith(b"\n")
        with path.open("a") as handle:
            if needs_newline:
                handle.write("\n")
            handle.write(json.dumps(row, sort_keys=True) + "\n")
            handle.flush()
            os.fsync(handle.fileno())


def claim(claims: str | Path, key: str) -> bool:
    """Claim run ``key`` for this process: True for exactly one caller per ``claims`` folder (an atomic
    exclusive create), so workers sharing the folder never run the same run twice."""
    try:
        handle = os.open(Path(claims) / key, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except (FileExistsError, FileNotFoundError):  # claimed already, or the sweep owning the folder has ended
        return False
    try:
        os.write(handle, str(os.getpid()).encode())  # the holder, so waiting workers can tell it has died
    finally:
        os.close(handle)
    return True


def _claim_lost(path: Path) -> bool:
    """Whether the claim file ``path`` belongs to a process that no longer exists (killed with its run)."""
    try:
        text = path.read_text().strip()
    except OSError:
        return False
    if not text.isdigit():
        return False  # just created, or made by hand: assume its holder lives
    try:
        os.kill(int(text), 0)
    except ProcessLookupError:
        return True
    except (PermissionError, OSError):
        return False
    return False


def _note_failed(claims: str | Path | None, key: str) -> None:
    """Tell the other workers of ``claims`` that run ``key`` failed in this sweep."""
    if claims is not None:
        try:
            (Path(claims) / f"{key}.failed").touch()
        except OSError:
            pass


def _failed_in_sweep(claims: str | Path | None, keys: Iterable[str]) -> set[str]:
    """Of ``keys``, the runs failed in this sweep according to ``claims`` (noted, or claimed by a process that
    has died)."""
    if claims is None:
        return set()
    folder = Path(claims)
    return {key for key in keys if (folder / f"{key}.failed").exists() or _claim_lost(folder / key)}


def release(claims: str | Path, key: str) -> None:
    """Give run ``key`` back to the workers of ``claims`` (after it failed in a way another try may fix)."""
    (Path(claims) / key).unlink(missing_ok=True)


def out_of_memory(error: BaseException) -> bool:
    """Whether ``error`` is the device running out of memory (worth another try once other runs have ended)."""
    import torch

    return isinstance(error, torch.OutOfMemoryError) or "out of memory" in str(error).lower()


def free_device_memory() -> None:
    """Collect garbage (runs leave reference cycles behind) and hand the CUDA caching allocator's unused blocks
    back to the device, so other processes on the GPU can use them."""
    import gc

    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def numeric_mismatch(rows: list[dict], on_gpu: bool, dtype: str, matmul: str) -> str | None:
    """Why new runs with these numerics must not join ``rows`` (one results folder), or None.

    A grid's rows are compared with each other, so they must share the model dtype and, on a GPU, the
    float32 matmul mode (IEEE or TF32: the projected gradient moves by a few percent). Only rows of the same
    kind of device are compared (CPU and GPU rows differ in their random streams anyway); rows from before
    ``float32_matmul`` was recorded ran in IEEE float32.
    """
    same_kind = [r for r in rows if (r.get("device", "cpu") != "cpu") == on_gpu]
    dtypes = {r.get("dtype", "float32") for r in same_kind}
    if dtypes and dtypes != {dtype}:
        return f"its {'GPU' if on_gpu else 'CPU'} rows use dtype {', '.join(sorted(dtypes))}, not {dtype}"
    modes = {r.get("float32_matmul") or "ieee" for r in same_kind}
    if on_gpu and dtype == "float32" and modes and modes != {matmul}:
        return f"its GPU rows use {', '.join(sorted(modes))} float32 matmuls, not {matmul}"
    return None


def wait_for_free_memory(min_gib: float, device: str = "cuda", poll_s: float = 10.0,
                         timeout_s: float = 600.0) -> float:
    """Block until the GPU has ``min_gib`` GiB free (``torch.cuda.mem_get_info``: the whole device, every
    process on it) or ``timeout_s`` has passed (then warn and go on); returns the seconds waited. For sweep
    workers sharing one GPU: a worker starts its next run only when the run fits.

    Each poll first hands this process's unused cached blocks back to the device (garbage collection, then
    ``torch.cuda.empty_cache``): otherwise every waiting worker keeps the cache of its last run and, with
    enough workers, they wait on each other with the GPU idle (session 9: ten Qwen2.5-0.5B workers held
    132 GB and waited for 14 GiB for ten minutes)."""
    import torch

    start = time.perf_counter()
    while True:
        free_device_memory()
        if torch.cuda.mem_get_info(torch.device(device))[0] >= min_gib * 2**30:
            break
        waited = time.perf_counter() - start
        if waited >= timeout_s:
            warnings.warn(f"dlzo: the GPU still has less than {min_gib:g} GiB free after {waited:.0f} s; "
                          "starting the next run anyway.", stacklevel=2)
            break
        time.sleep(poll_s)
    return time.perf_counter() - start


def memory_need(rows: list[dict], config: RunConfig) -> float | None:
    """The most GPU memory (GiB) a finished run of the same model, task and method held at its peak (the rows'
    ``peak_gpu_gib``, recorded by :meth:`dlzo.recipes.RunContext.run` on a GPU; any lr and seed), or None while
    no such run has finished: what the next run of that kind will need, its worker's resident model included."""
    peaks = [row["peak_gpu_gib"] for row in rows if row.get("peak_gpu_gib") is not None
             and (row.get("model"), row.get("task"), row.get("method")) == (config.model, config.task, config.method)]
    return max(peaks) if peaks else None


def memory_gate(min_gib: float, device: str, rows: Callable[[], list[dict]], margin_gib: float = 2.0,
                **wait) -> Callable[[RunConfig], float]:
    """A ``before_run`` for :func:`run_grid` (``dlzo sweep --min-free-gb``): before each run, wait until the GPU
    has room for it — ``min_gib`` free, or more where finished runs of its kind (:func:`memory_need` over
    ``rows()``, read afresh each time, so every worker's finished runs count) held more than this process holds
    now (its resident model, after handing back its cache) plus ``min_gib``: then their peak minus what this
    process holds, plus ``margin_gib``. Workers that start side by side can still overrun the GPU together
    (:func:`run_grid` retries such a run); the gate keeps a worker from starting a 30 GiB run into 14 GiB."""
    import torch

    def gate(config: RunConfig) -> float:
        need = memory_need(rows(), config)
        target = min_gib
        if need is not None:
            free_device_memory()
            held = torch.cuda.memory_reserved(torch.device(device)) / 2**30
            target = max(min_gib, need - held + margin_gib)
        return wait_for_free_memory(target, device, **wait)

    return gate


def run_grid(runs: list[RunConfig], store: ResultsStore, run_fn: Callable[[RunConfig], dict],
             shard: tuple[int, int] = (0, 1), time_budget_s: float | None = None, progress: bool = True,
             claims: str | Path | None = None, oom_retries: int = 3, oom_wait_s: float = 60.0,
             before_run: Callable[[RunConfig], object] | None = None, keep_going: bool = False,
             lr_search_seeds: list[int] | None = None, poll_s: float = 5.0,
             sleep: Callable[[float], object] | None = None, first: Iterable[str] = (),
             unresumable: Iterable[str] = (), adopt_from: Iterable[str | Path] = ()) -> dict:
    """Run every not-yet-finished run of this shard; stop starting new runs once ``time_budget_s`` is spent
    (at least one run always starts, so every chunk of a long sweep makes progress).

    ``run_fn(config) -> dict`` returns the run's metrics; the stored row is config + metrics + key (in
    ``shard-<i>.jsonl``). Runs go seed by seed (stable within a seed), so a sweep stopped early leaves whole
    seeds finished rather than every seed of a few layers; the runs whose keys are in ``first`` (a sweep's
    runs cut off mid-way, which resume from their run logs) go before all others, so started work lands first
    and no worker is left resuming a long run alone at the end of the sweep. The runs whose keys are in
    ``unresumable`` (runs without a run log to resume from: first-order, zero-shot) go before even those: on a
    box held for a limited time a sweep's start is when most of it is left, and such a run cut off at the end
    starts over, while a cut-off ZO run loses nothing. Without ``claims``, shard
    ``(i, n)`` takes every n-th run of that order. With ``claims`` (a folder shared by the workers of one sweep, as
    ``dlzo sweep --parallel`` does), every worker walks the whole order and runs whatever no worker has
    claimed yet, so no worker idles while another still has a queue.

    A run that runs out of device memory (workers sharing one GPU) is not fatal: its claim is released, the
    worker frees its cached memory, waits ``oom_wait_s`` seconds and puts the run at the end of its queue (a
    run with a run log resumes from it); only the ``oom_retries``-th failure of the same run is raised.
    ``before_run(config)`` is called before each run is claimed (e.g. :func:`memory_gate`).
    Any other failure is raised, unless ``keep_going``: then the run is recorded in the store's
    ``failed.jsonl`` (key, settings, error) with a warning, and the sweep goes on with the next run (a later
    sweep tries it again).

    ``lr_search_seeds`` (a grid's key, :func:`grid_search_seeds`; ``runs`` is then the whole grid): a cell with
    several lrs runs them all on those seeds, and its other seeds' runs are held back until every search run
    of the cell has a row; then only the lr picked on dev (:func:`plan_lr_search`) runs on them, in this same
    call. A worker whose queue is empty looks at the results again (its own and other shards' rows); with
    ``claims`` it waits (``sleep(poll_s)`` between looks) while held-back runs may still become ready because
    another worker is running their search runs, and stops waiting once the time budget is spent. A cell whose
    search run failed in this sweep (``keep_going``, or its worker died) cannot be decided: its held-back runs
    are skipped. Fixed shards (no ``claims``) never wait for other shards: what they cannot start yet stays
    held back for the next call.

    ``adopt_from`` (results folders of other grids, as ``dlzo sweep --adopt``): a run about to start whose key
    one of them has finished is copied from there instead of run (claimed first, so no other worker runs it).
    A sweep adopts what is ready before it starts; this catches the held-back runs an lr search readies later,
    e.g. the other seeds at an lr that the search picks again.

    Returns counts: ``{"done_before", "ran", "left", "failed"}`` (``left``: unfinished runs nobody has started),
    and with ``lr_search_seeds`` also ``"held"`` (held-back runs of the whole grid not ready at the end) and
    ``"undecided"`` (those of them skipped because a search run of their cell failed); where ``adopt_from``
    holds runs of this grid, also ``"adopted"`` (runs copied instead of run).
    """
    index, count = shard
    if not 0 <= index < count:
        raise DlzoError(f"Shard {index} of {count} does not exist; use 0..{count - 1}.")
    first, unresumable = set(first), set(unresumable)
    ordered = sorted(runs, key=lambda r: (r.key not in unresumable, r.key not in first, r.seed))
    mine = ordered if claims is not None else [r for i, r in enumerate(ordered) if i % count == index]
    staged = lr_search_seeds is not None
    failed_here: set[str] = set()  # runs this worker saw fail (keep_going)
    keys = {r.key for r in runs}
    adoptable = {row["key"]: row for source in adopt_from for row in ResultsStore(source).rows()
                 if row.get("key") in keys}
    adopted = 0

    if staged:
        search_keys = [r.key for cell in plan_lr_search(runs, lr_search_seeds, []).search.values() for r in cell]

        def replan() -> tuple[LrSearchPlan, set[str]]:
            rows = store.rows()
            done = {row["key"] for row in rows if "key" in row}
            lost = _failed_in_sweep(claims, [k for k in search_keys if k not in done])
            plan = plan_lr_search(runs, lr_search_seeds, rows, failed=failed_here | lost)
            return plan, done

        plan, done = replan()
        ready = {r.key for r in plan.ready}
        todo = [r for r in mine if r.key in ready and r.key not in done]
        done_before = sum(r.key in ready and r.key in done for r in mine)
    else:
        done = store.done_keys()
        todo = [r for r in mine if r.key not in done]
        done_before = len(mine) - len(todo)
    start = time.perf_counter()

    def out_of_time() -> bool:
        return time_budget_s is not None and time.perf_counter() - start > time_budget_s

    ran = 0
    bar = progress_bar(total=len(todo), enabled=progress, desc=f"runs (shard {index}/{count})", unit="run")
    queue, failures, failed, stopped = list(todo), dict.fromkeys((r.key for r in todo), 0), 0, False
    while True:
        while queue:
            config = queue.pop(0)
            if ran and out_of_time():
                stopped = True
                break
            if claims is not None and (Path(claims) / config.key).exists():
                continue  # taken already: no need to wait for memory for it
            if before_run is not None:
                before_run(config)
            if claims is not None and not claim(claims, config.key):
                continue
            if config.key in adoptable:  # another grid finished this very run: copy it, do not run it again
                store.append(adoptable[config.key], shard=index)
                adopted += 1
                bar.update(1)
                continue
            metrics = None
            try:
                metrics = run_fn(config)
            except Exception as error:
                failures[config.key] = failures.get(config.key, 0) + 1
                if not out_of_memory(error) or failures[config.key] > oom_retries:
                    if staged:
                        failed_here.add(config.key)
                        _note_failed(claims, config.key)  # other workers stop waiting for it
                    if not keep_going:
                        raise
                    store.record_failure(config, error)
                    failed += 1
                    bar.update(1)
                    continue
            if metrics is None:  # out of memory; outside the except block, so the run's tensors can be freed
                warnings.warn(f"dlzo: run {config.key} ran out of device memory (try {failures[config.key]} of "
                              f"{oom_retries + 1}); it goes back to the queue.", stacklevel=2)
                if claims is not None:
                    release(claims, config.key)
                free_device_memory()
                time.sleep(oom_wait_s)
                queue.append(config)
                continue
            store.append({**config.as_dict(), **metrics, "key": config.key}, shard=index)
            ran += 1
            bar.update(1)
        if not staged or stopped or out_of_time():
            break
        plan, done = replan()  # the search runs finished meanwhile may have decided some cells' lr
        ready = {r.key for r in plan.ready}
        fresh = [r for r in mine if r.key in ready and r.key not in done and r.key not in failed_here
                 and (claims is None or not (Path(claims) / r.key).exists())]
        if fresh:
            queue = fresh
            bar.total = (bar.total or 0) + len(fresh)
            bar.refresh()
            continue
        if claims is None or not plan.pending:
            break
        (sleep or time.sleep)(poll_s)  # other workers still run search runs: wait for their rows
    bar.close()
    if staged:
        plan, done = replan()
        ready = {r.key for r in plan.ready}
        unfinished = [r for r in mine if r.key in ready and r.key not in done]
        left = len(unfinished) if claims is None else sum(not (Path(claims) / r.key).exists() for r in unfinished)
        counts = {"done_before": done_before, "ran": ran, "left": left, "failed": failed,
                  "held": len(plan.held), "undecided": plan.held_in(plan.undecidable)}
    else:
        if claims is None:
            left = len(todo) - ran - adopted
        else:
            left = sum(1 for r in todo if not (Path(claims) / r.key).exists())
        counts = {"done_before": done_before, "ran": ran, "left": left, "failed": failed}
    return {**counts, "adopted": adopted} if adoptable else counts


def _best_lrs(df: pd.DataFrame, by: str, group: list[str], higher_is_better: bool | None) -> pd.DataFrame:
    """Per ``group``, the lr with the best mean ``by`` (ties: the smaller lr); columns ``group + ["lr"]``."""
    higher = (by != "dev_loss") if higher_is_better is None else higher_is_better
    means = df.groupby(group + ["lr"], dropna=False)[by].mean().reset_index()
    means = means.sort_values(group + [by, "lr"], ascending=[True] * len(group) + [not higher, True])
    return means.drop_duplicates(group, keep="first")[group + ["lr"]]


def _lr_groups(df: pd.DataFrame) -> list[str]:
    """The columns whose values make one lr search: (model, task, method, options), those the table has."""
    return [c for c in ("model", "task", "method", "options") if c in df]


def seeds_with_every_lr(df: pd.DataFrame, group: list[str] | None = None) -> list[int]:
    """The seeds on which every lr of every (model, task, method, options) group has a row.

    An lr grid that is still running holds some lrs on more seeds than others; picking the lr on the mean
    over whatever seeds each lr has would compare unequal samples. Choosing (and scoring) on these seeds
    keeps the comparison even; once the grid is complete they are all its seeds.
    """
    if df.empty:
        return []
    if "seed" not in df or "lr" not in df:
        raise DlzoError("The results table needs 'seed' and 'lr' columns to find the seeds every lr has run on.")
    group = group or _lr_groups(df)
    cells = df.groupby(group + ["lr"], dropna=False)["seed"].agg(lambda seeds: frozenset(seeds.tolist()))
    common = frozenset.intersection(*cells.tolist())
    return sorted(int(seed) for seed in common)


def select_lr(df: pd.DataFrame, by: str = "dev_score", group: list[str] | None = None,
              higher_is_better: bool | None = None, on_seeds: list[int] | None = None) -> pd.DataFrame:
    """Keep, per (model, task, method, options), the runs of the lr whose mean ``by`` over seeds is best on dev.

    Test metrics never enter the choice. ``by="dev_loss"`` minimises, anything else maximises, unless
    ``higher_is_better`` says otherwise; ties go to the smaller lr. With ``on_seeds`` (a grid's
    ``lr_search_seeds``) only the rows of those seeds choose the lr, and the rows of every seed at the chosen
    lr are kept (a group without rows on those seeds is dropped).
    """
    if df.empty:
        return df
    group = group or _lr_groups(df)
    if by not in df:
        raise DlzoError(f"The results table has no column {by!r} to select the lr by.")
    choosing = df
    if on_seeds is not None:
        if "seed" not in df:
            raise DlzoError("The results table has no column 'seed' to choose the lr on some seeds only.")
        choosing = df[df["seed"].isin(list(on_seeds))]
    best = _best_lrs(choosing, by, group, higher_is_better)
    return df.merge(best, on=group + ["lr"], how="inner")
