"""Reading a main-results grid (tasks × methods × seeds): the table, the averages, the paired claim tests.

The paper's main claim is a comparison of averages over nine tasks; ours is made per seed and per task:

* :func:`tuned_runs` — where a method ran with several lrs, the runs of the lr with the best mean dev score
  on each task (MeZO's protocol; test never enters the choice), and :func:`chosen_lrs` to show them
  (marking with :func:`unfinished_searches` the picks made before every lr has run);
* :func:`method_table` — mean ± std (and n) of each method on each task, plus the average over the tasks
  where every shown method has runs (an average over different task sets would not compare);
* :func:`claim_tests` — the paired tests (by task and seed) of "dominant ≥ full MeZO" and "dominant >
  random layer", per task and pooled over tasks (Wilcoxon signed-rank, bootstrap CI of the mean
  difference; :func:`dlzo.stats.paired_comparison`);
* :func:`pooled_claims` — the same tests pooled over grids of one design (e.g. two models);
* :func:`equivalence_tests` — "matches" tested as a claim of its own: two one-sided tests (TOST) that the
  dominant layer is within ±margin points of full MeZO, per grid and pooled over grids, with the tightest
  margin the data supports (:func:`dlzo.stats.equivalence_test`);
* :func:`step_zero_picks` — the trained runs whose lowest-dev-loss checkpoint was the untouched model (they
  report zero-shot), and, where a row carries its ``dev_curve``, whether a later checkpoint scored higher;
* :data:`PAPER_AVERAGES` — the paper's nine-task averages (LLaMA2-7B, Qwen3-8B), shown for context only;
* :func:`markdown_table`, :func:`claims_markdown`, :func:`grid_markdown` — the table and the pooled claims as
  GitHub Markdown, under readable task and method names (the README's tables are these, and a test keeps them
  equal to the committed results); :func:`replace_marked_block` puts such a block into a document between its
  markers (``dlzo sweep GRID --markdown --into README.md``).
"""

from __future__ import annotations

import json

import pandas as pd

from .errors import DlzoError
from .experiments import grid_runs, grid_search_seeds, plan_lr_search, select_lr
from .stats import (
    COMPARISON_COLUMNS,
    equivalence_test,
    format_mean_std,
    pair_runs,
    paired_comparison_if_possible,
)

# the table's column order: no training, first order, full-model ZO, the paper's method and its controls
METHOD_ORDER = ("zero_shot", "fo_full", "mezo_full", "mezo_lora", "sparse_mezo", "dominant", "dominant_lora",
                "random_layer")

# the paper's nine-task averages (its Table; 10k steps, fp16, 7B-8B models): context, not a comparison
PAPER_AVERAGES = pd.DataFrame(
    {"mezo_full": [71.87, 84.52], "dominant": [72.44, 85.67], "mezo_lora": [72.22, 84.33],
     "dominant_lora": [72.31, 85.45]},
    index=pd.Index(["LLaMA2-7B (paper)", "Qwen3-8B (paper)"], name="model"),
)

# readable names for Markdown tables (the results keep the short keys)
TASK_LABELS = {"sst2": "SST-2", "rte": "RTE", "cb": "CB", "boolq": "BoolQ", "wsc": "WSC", "multirc": "MultiRC",
               "copa": "COPA", "squad": "SQuAD (F1)", "drop": "DROP (F1)"}
METHOD_LABELS = {"zero_shot": "zero-shot", "fo_full": "first-order AdamW", "mezo_full": "full MeZO",
                 "mezo_lora": "MeZO-LoRA", "sparse_mezo": "Sparse-MeZO", "dominant": "dominant layer",
                 "dominant_lora": "dominant + LoRA", "random_layer": "random layer"}

CLAIMS = (
    ("dominant", "mezo_full", "two-sided"),
    ("dominant", "mezo_full", "less"),
    ("dominant", "random_layer", "greater"),
    ("dominant_lora", "mezo_lora", "two-sided"),
)


def ordered_methods(methods) -> list[str]:
    """``methods`` in the table's column order: those of :data:`METHOD_ORDER` first, in that order, then the
    others in the order given."""
    methods = list(methods)
    return [m for m in METHOD_ORDER if m in methods] + [m for m in methods if m not in METHOD_ORDER]


def _check(table: pd.DataFrame) -> None:
    if table.empty:
        raise DlzoError("The results table is empty; run the grid (or set recompute) first.")
    runs = [c for c in ("model", "task", "method", "seed") if c in table]
    if table.duplicated(runs).any():
        raise DlzoError("Some method has several runs per task and seed (an lr grid); pass the table through "
                        "dlzo.main_results.tuned_runs first, which keeps the lr picked on dev.")


def tuned_runs(table: pd.DataFrame, by: str = "dev_score", on_seeds: list[int] | None = None) -> pd.DataFrame:
    """The runs of each method's best lr per model and task, by the mean ``by`` (dev) over seeds; with
    ``on_seeds`` (a grid's ``lr_search_seeds``) over those seeds only, keeping every seed's runs at that lr."""
    if table.empty or "lr" not in table:
        return table
    return select_lr(table, by=by, group=[c for c in ("model", "task", "method") if c in table], on_seeds=on_seeds)


def chosen_lrs(table: pd.DataFrame, provisional=()) -> pd.DataFrame:
    """Task × method table of the lr each method's rows ran with (after :func:`tuned_runs`: the one picked);
    the (task, method) cells in ``provisional`` (:func:`unfinished_searches`) are marked ``*``."""
    _check(table)
    shown = table[table["lr"].fillna(0) > 0] if "lr" in table else table.iloc[:0]  # zero-shot rows: lr 0 / none
    order = ordered_methods(sorted(set(shown["method"])))
    lrs = shown.groupby(["task", "method"])["lr"].first().unstack("method").reindex(columns=order)
    text = lrs.map(lambda v: f"{v:.0e}" if pd.notna(v) else "—")
    for task, method in set(provisional):
        if task in text.index and method in text.columns and pd.notna(lrs.loc[task, method]):
            text.loc[task, method] += "*"
    return text


def unfinished_searches(grid: dict, table: pd.DataFrame) -> set[tuple[str, str]]:
    """The (task, method) cells of a grid whose lr search has not run every lr yet on its search seeds (the
    grid's ``lr_search_seeds``, else every seed): there :func:`tuned_runs` picks among the lrs run so far.
    The grid's own :func:`~dlzo.experiments.plan_lr_search` decides, as it does for the sweep."""
    seeds = grid_search_seeds(grid) or grid["seeds"]
    plan = plan_lr_search(grid_runs(grid), seeds, table.to_dict("records"))
    return {(dict(cell)["task"], dict(cell)["method"]) for cell in plan.pending | plan.undecidable}


def method_table(table: pd.DataFrame, methods: list[str] | None = None, metric: str = "test_score",
                 digits: int = 1) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``(numbers, text)``: per task × method the mean, std and n of ``metric`` (long form), and a display table
    of "mean ± std (n)" with one row per task and an ``average`` row over the tasks every method covers."""
    _check(table)
    methods = methods or list(dict.fromkeys(table["method"]))
    df = table[table["method"].isin(methods)]
    numbers = (df.groupby(["task", "method"])[metric].agg(mean="mean", std="std", n="count").reset_index())
    numbers["std"] = numbers["std"].fillna(0.0)
    tasks = list(dict.fromkeys(df["task"]))
    text = pd.DataFrame(index=pd.Index(tasks, name="task"), columns=methods, dtype=object)
    for row in numbers.itertuples():
        text.loc[row.task, row.method] = f"{format_mean_std(row.mean, row.std, digits)} ({row.n})"
    complete = [t for t in tasks if set(numbers[numbers["task"] == t]["method"]) >= set(methods)]
    if complete:
        means = numbers[numbers["task"].isin(complete)].groupby("method")["mean"].mean()
        text.loc[f"average ({len(complete)} tasks)"] = [f"{means[m]:.{digits}f}" for m in methods]
    return numbers, text.fillna("—")


def claim_tests(table: pd.DataFrame, claims=CLAIMS, metric: str = "test_score", missing_ok: bool = False) -> pd.DataFrame:
    """One row per claim and task (and ``all`` pooled over tasks) with the paired statistics; claims whose
    methods have no paired runs on a task are left out (the grid has not run them yet). With ``missing_ok``
    a table with no claim pairs at all (e.g. a first-order-only grid) gives an empty frame instead of an error."""
    _check(table)
    rows = []
    for a, b, alternative in claims:
        for task in [*dict.fromkeys(table["task"]), "all"]:
            part = table if task == "all" else table[table["task"] == task]
            if not {a, b} <= set(part["method"]):
                continue
            result = paired_comparison_if_possible(part, a, b, ["model", "task", "seed"], metric, alternative)
            if result is not None:
                rows.append({"task": task, **result})
    if not rows:
        if missing_ok:
            return pd.DataFrame(columns=["task", *COMPARISON_COLUMNS])
        raise DlzoError("No claim has paired runs yet; run the dominant, mezo_full and random_layer rows.")
    return pd.DataFrame(rows)


def pooled_claims(tables: dict[str, pd.DataFrame], claims=CLAIMS, metric: str = "test_score") -> pd.DataFrame:
    """The claims pooled over several grids' tuned tables (e.g. the same design on two models): one row per
    claim over every (model, task, seed) pair of all of them, with the models it pools (``models``)."""
    if not tables:
        raise DlzoError("Pass at least one grid's results to pool.")
    table = pd.concat(list(tables.values()), ignore_index=True)
    tests = claim_tests(table, claims, metric, missing_ok=True)
    pooled = tests[tests["task"] == "all"].drop(columns="task")
    models = ", ".join(dict.fromkeys(table["model"])) if "model" in table else ""
    return pooled.assign(grids=" + ".join(tables), models=models).reset_index(drop=True)


def equivalence_tests(tables: dict[str, pd.DataFrame], margins=(1.0, 2.0), a: str = "dominant",
                      against=("mezo_full", "random_layer"), metric: str = "test_score",
                      alpha: float = 0.05) -> pd.DataFrame:
    """Does ``a`` match each method of ``against`` within ±margin points? One row per method, grid (every
    (task, seed) pair of it) and margin, and for several grids one over all of them (``grids`` joined by
    " + "); grids without paired runs of both methods are left out. Columns: grids, a, b, n_pairs, mean_diff,
    ci_low / ci_high (the ``1 − 2·alpha`` bootstrap CI), smallest_margin, margin, p_value (TOST), equivalent."""
    if not tables:
        raise DlzoError("Pass at least one grid's results to test.")
    for table in tables.values():
        _check(table)
    groups = dict(tables)
    if len(tables) > 1:
        groups[" + ".join(tables)] = pd.concat(list(tables.values()), ignore_index=True)
    rows = []
    for b in against:
        for name, table in groups.items():
            if not {a, b} <= set(table["method"]):
                continue
            paired = pair_runs(table, a, b, ["model", "task", "seed"], metric)  # once for every margin
            if paired.empty:  # no (task, seed) has both methods yet
                continue
            rows += [{"grids": name, "a": a, "b": b, **equivalence_test(paired["diff"], margin, alpha)}
                     for margin in margins]
    return pd.DataFrame(rows, columns=["grids", "a", "b", "n_pairs", "mean_diff", "ci_low", "ci_high",
                                       "smallest_margin", "margin", "p_value", "equivalent"])


def coverage(table: pd.DataFrame, grid_runs: list) -> pd.DataFrame:
    """Finished runs vs the grid's runs, per task and method: what the tables rest on."""
    done = set(table["key"]) if "key" in table else set()
    rows = [{"task": r.task, "method": r.method, "done": r.key in done} for r in grid_runs]
    counts = pd.DataFrame(rows).groupby(["task", "method"])["done"].agg(done="sum", planned="count")
    return counts.reset_index()


def step_zero_picks(table: pd.DataFrame) -> pd.DataFrame:
    """Per method: how many trained runs (lr > 0) kept their step-0 weights because step 0 had the lowest dev
    loss (MeZO's checkpoint rule), so that their test score is the zero-shot one. Of those whose row has a
    ``dev_curve`` (rows since session 14), ``higher_later`` counts the runs where a later checkpoint had a
    higher dev score than step 0 — the model grew confidently right (loss up, accuracy up), the over-confidence
    that made MeZO's first-order protocol evaluate once per epoch. Reads every run (all lrs of a search)."""
    columns = ["method", "trained", "step_zero", "with_curve", "higher_later"]
    if "best_step" not in table or "lr" not in table:
        return pd.DataFrame(columns=columns)
    trained = table[table["lr"].fillna(0) > 0]
    curves = trained["dev_curve"] if "dev_curve" in trained else pd.Series(None, index=trained.index)
    rows = []
    for method, part in trained.groupby("method", sort=False):
        kept = part[part["best_step"] == 0]
        curved = [json.loads(c) for c in curves.loc[kept.index] if isinstance(c, str)]
        start = [dict((step, score) for step, _, score in curve).get(0) for curve in curved]
        higher = sum(any(score is not None and score > first for step, _, score in curve if step > 0)
                     for curve, first in zip(curved, start, strict=True) if first is not None)
        rows.append({"method": method, "trained": len(part), "step_zero": len(kept), "with_curve": len(curved),
                     "higher_later": higher})
    out = pd.DataFrame(rows, columns=columns)
    return out.set_index("method").reindex(ordered_methods(out["method"])).reset_index()


def _pipe_table(frame: pd.DataFrame) -> str:
    """A frame of strings as a GitHub pipe table, its index as the first column."""
    header = [frame.index.name or "", *map(str, frame.columns)]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join([str(index), *map(str, row)]) + " |" for index, row in zip(frame.index, frame.values)]
    return "\n".join(lines)


def markdown_table(table: pd.DataFrame, methods: list[str] | None = None, digits: int = 1) -> str:
    """:func:`method_table`'s display table (tasks × methods, "mean ± std (n)", the average row) as GitHub
    Markdown, under :data:`TASK_LABELS` / :data:`METHOD_LABELS`; the best mean of each task in bold."""
    numbers, text = method_table(table, methods, digits=digits)
    for task, part in numbers.groupby("task"):
        if part["mean"].round(digits).nunique() < 2:
            continue  # every method alike (e.g. all at zero-shot): nothing to mark
        for method in part.loc[part["mean"] == part["mean"].max(), "method"]:
            text.loc[task, method] = f"**{text.loc[task, method]}**"
    order = list(TASK_LABELS)  # MeZO's task order, then any other task, then the average row
    text = text.loc[sorted(text.index, key=lambda t: (t.startswith("average"), order.index(t) if t in order else len(order)))]
    text.index = [TASK_LABELS.get(task, task) for task in text.index]
    text.index.name = "task"
    text.columns = [METHOD_LABELS.get(m, m) for m in text.columns]
    return _pipe_table(text)


def _signed(text: str) -> str:
    return text.replace("-", "−")  # the typographic minus of the README's prose


def claims_markdown(tests: pd.DataFrame) -> str:
    """The pooled rows (``task == "all"``, or every row of :func:`pooled_claims`) of claim tests as GitHub
    Markdown: one line per claim with pairs, mean difference and bootstrap CI, wins / losses and p."""
    rows = tests[tests["task"] == "all"] if "task" in tests else tests
    if rows.empty:
        raise DlzoError("No pooled claim rows to show; pass claim_tests(...) or pooled_claims(...) output.")
    alternative = {"two-sided": "two-sided", "less": "one-sided, a < b", "greater": "one-sided, a > b"}
    text = pd.DataFrame({
        "pairs": rows["n_pairs"].astype(int).astype(str).to_numpy(),
        "a − b (95% CI)": [_signed(f"{d:+.1f} [{lo:.1f}, {hi:.1f}]") for d, lo, hi in
                           zip(rows["mean_diff"], rows["ci_low"], rows["ci_high"], strict=True)],
        "wins / losses": [f"{win} / {loss}" for win, loss in zip(rows["wins"], rows["losses"], strict=True)],
        "Wilcoxon p": [f"{p:.3f} ({alternative[alt]})" for p, alt in
                       zip(rows["p_value"], rows["alternative"], strict=True)],
    }, index=pd.Index([f"{METHOD_LABELS.get(a, a)} vs {METHOD_LABELS.get(b, b)}" for a, b in
                       zip(rows["a"], rows["b"], strict=True)], name="claim"))
    return _pipe_table(text)


def grid_markdown(grid: dict, table: pd.DataFrame, digits: int = 1) -> str:
    """One grid's results as the README shows them: its lr-tuned table (:func:`tuned_runs` on the grid's
    ``lr_search_seeds``) by :func:`markdown_table`, then its pooled claims by :func:`claims_markdown` (left
    out while no claim has pairs). ``dlzo sweep GRID --markdown`` prints it."""
    if table.empty:
        raise DlzoError(f"{grid['name']} has no finished runs yet; run `dlzo sweep` on its grid file first.")
    tuned = tuned_runs(table, on_seeds=grid.get("lr_search_seeds"))
    if tuned.duplicated([c for c in ("model", "task", "method", "seed") if c in tuned]).any():
        raise DlzoError(f"{grid['name']} runs a method more than once per task and seed (e.g. every layer); the "
                        "Markdown table is for main-results grids such as experiments/main_smollm2.yaml.")
    blocks = [markdown_table(tuned, ordered_methods(dict.fromkeys(tuned["method"])), digits=digits)]
    tests = claim_tests(tuned, missing_ok=True)
    if (tests["task"] == "all").any():
        blocks.append(claims_markdown(tests))
    return "\n\n".join(blocks)


BLOCK_END = "<!-- end of dlzo sweep output -->"


def block_marker(grid_file: str) -> str:
    """The comment line that opens a document's block for a grid's Markdown (its end: :data:`BLOCK_END`)."""
    return f"<!-- dlzo sweep {grid_file} --markdown -->"


def replace_marked_block(text: str, marker: str, block: str, name: str = "the document") -> str:
    """``text`` with the lines between the line ``marker`` and the next :data:`BLOCK_END` line replaced by
    ``block`` (a blank line each side); the markers stay, so the block can be replaced again."""
    lines = text.split("\n")
    if lines.count(marker) != 1:
        found = "has no" if marker not in lines else "has more than one"
        raise DlzoError(f"{name} {found} line {marker!r}; put it, and a line {BLOCK_END!r} below it, once where "
                        "the table goes.")
    start = lines.index(marker)
    try:
        end = lines.index(BLOCK_END, start + 1)
    except ValueError:
        raise DlzoError(f"{name} has no line {BLOCK_END!r} after {marker!r}; add it where the table ends.") from None
    return "\n".join([*lines[:start + 1], "", block.strip("\n"), "", *lines[end:]])
