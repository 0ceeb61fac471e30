"""The main-results readers: mean ± std table with an average over complete tasks, paired claim tests, and
the coverage of a grid, on a synthetic results table with known numbers."""

import pandas as pd
import pytest

from dlzo.errors import DlzoError
from dlzo.experiments import expand_grid
from dlzo.main_results import (
    BLOCK_END,
    PAPER_AVERAGES,
    block_marker,
    chosen_lrs,
    claim_tests,
    claims_markdown,
    coverage,
    equivalence_tests,
    grid_markdown,
    markdown_table,
    method_table,
    ordered_methods,
    pooled_claims,
    replace_marked_block,
    step_zero_picks,
    tuned_runs,
)


def results() -> pd.DataFrame:
    rows = []
    for seed in range(3):
        rows += [
            {"model": "m", "task": "sst2", "method": "zero_shot", "seed": seed, "test_score": 50.0},
            {"model": "m", "task": "sst2", "method": "mezo_full", "seed": seed, "test_score": 70.0 + seed},
            {"model": "m", "task": "sst2", "method": "dominant", "seed": seed, "test_score": 72.0 + seed},
            {"model": "m", "task": "sst2", "method": "random_layer", "seed": seed, "test_score": 60.0},
            {"model": "m", "task": "copa", "method": "dominant", "seed": seed, "test_score": 58.0},
            {"model": "m", "task": "copa", "method": "zero_shot", "seed": seed, "test_score": 61.0},
        ]
    return pd.DataFrame(rows)


def test_method_table_means_and_average_over_complete_tasks_only():
    numbers, text = method_table(results(), ["zero_shot", "mezo_full", "dominant"])
    row = numbers[(numbers.task == "sst2") & (numbers.method == "dominant")].iloc[0]
    assert row["mean"] == 73.0 and row["std"] == 1.0 and row["n"] == 3
    assert text.loc["sst2", "dominant"] == "73.0 ± 1.0 (3)"
    assert text.loc["copa", "mezo_full"] == "—"  # not run
    assert text.loc["average (1 tasks)", "dominant"] == "73.0"  # copa lacks mezo_full: not averaged


def test_claim_tests_pair_by_seed_and_skip_missing_methods():
    tests = claim_tests(results())
    vs_full = tests[(tests.b == "mezo_full") & (tests.alternative == "two-sided") & (tests.task == "sst2")].iloc[0]
    assert vs_full["mean_diff"] == 2.0 and vs_full["wins"] == 3 and vs_full["n_pairs"] == 3
    vs_random = tests[(tests.b == "random_layer") & (tests.task == "all")].iloc[0]
    assert vs_random["mean_diff"] == 13.0 and vs_random["p_value"] == pytest.approx(0.125)
    assert "copa" not in set(tests.task)  # no mezo_full / random_layer runs on copa
    with pytest.raises(DlzoError, match="No claim"):
        claim_tests(results()[results().method.isin(["zero_shot"])])
    empty = claim_tests(results()[results().method.isin(["zero_shot"])], missing_ok=True)  # e.g. a first-order grid
    assert empty.empty and list(empty.columns) == list(tests.columns)


def test_coverage_counts_finished_runs_of_the_grid():
    runs = expand_grid(["m"], ["sst2"], {"dominant": {"lr": 1e-3}, "zero_shot": {}}, seeds=[0, 1])
    table = pd.DataFrame({"key": [runs[0].key]})
    cov = coverage(table, runs)
    assert cov.set_index("method").loc["dominant", "done"] == 1 and cov["planned"].sum() == 4


def test_paper_averages_are_labelled_as_the_papers():
    assert all("(paper)" in name for name in PAPER_AVERAGES.index)
    assert PAPER_AVERAGES.loc["LLaMA2-7B (paper)", "dominant"] == 72.44


def test_variants_are_read_against_the_dominant_layer_by_seed():
    from dlzo.ablations import lr_curves, versus_reference

    rows = []
    for seed in range(3):
        rows += [{"model": "m", "task": "sst2", "method": "dominant", "seed": seed, "lr": 1e-3, "test_score": 70.0},
                 {"model": "m", "task": "sst2", "method": "mlp_only", "seed": seed, "lr": 1e-3,
                  "test_score": 68.0 - seed},
                 {"model": "m", "task": "sst2", "method": "dominant_lr", "seed": seed, "lr": 1e-4, "test_score": 60.0},
                 {"model": "m", "task": "sst2", "method": "dominant_lr", "seed": seed, "lr": 1e-2, "test_score": 50.0}]
    table = pd.DataFrame(rows)
    out = versus_reference(table).set_index("a")
    assert out.loc["mlp_only", "mean_diff"] == -3.0 and out.loc["mlp_only", "losses"] == 3
    # an lr sensitivity variant is read once per lr, not dropped for having several runs per seed
    assert out.loc["dominant_lr lr=0.0001", "mean_diff"] == -10.0 and out.loc["dominant_lr lr=0.01", "mean_diff"] == -20.0
    from dlzo.ablations import with_variant_labels

    labels = set(with_variant_labels(table)["method"])  # the figure's rows: one per lr where a method has several
    assert labels == {"dominant", "mlp_only", "dominant_lr lr=0.0001", "dominant_lr lr=0.01"}
    curves = lr_curves(table)
    assert set(curves["lr"]) == {1e-3, 1e-4, 1e-2} and curves["n"].max() == 3
    with pytest.raises(DlzoError, match="no 'dominant' runs"):
        versus_reference(table[table.method != "dominant"])


def test_the_zero_shot_test_score_is_read_off_runs_that_kept_their_step_0_weights():
    from dlzo.ablations import zero_shot_test_score

    table = pd.DataFrame({"best_step": [0, 250, 0], "test_score": [60.0, 73.4, 60.0]})
    assert zero_shot_test_score(table) == 60.0
    assert zero_shot_test_score(table[table.best_step > 0]) is None
    assert zero_shot_test_score(table.drop(columns="best_step")) is None
    with pytest.raises(DlzoError, match="disagree"):
        zero_shot_test_score(table.assign(test_score=[60.0, 73.4, 61.0]))


def test_strict_and_loose_layers_are_paired_by_seed():
    from dlzo.ablations import rule_comparison

    runs = pd.DataFrame([{"model": "m", "task": "sst2", "kind": "layer", "layer": layer, "seed": seed,
                          "test_score": 70.0 + (5 if layer == 11 else 0) + seed}
                         for layer in (2, 11, 20) for seed in range(3)])
    row = rule_comparison(runs, 11, 2).iloc[0]
    assert row["mean_diff"] == 5.0 and row["n_pairs"] == 3 and row["a"] == "strict_layer_11"
    with pytest.raises(DlzoError, match="lacks layer"):
        rule_comparison(runs, 11, 5)


def test_grid_results_reads_the_committed_table_or_nothing():
    from dlzo.notebook import grid_results

    grid, table = grid_results("experiments/main_core_smollm2.yaml")
    assert grid["name"] == "main_core_smollm2" and len(table) >= 38
    assert set(table["device"]) == {"NVIDIA H200"} and {"dominant", "zero_shot"} <= set(table["method"])
    assert grid_results("")[0] is None and grid_results("")[1].empty


def test_an_lr_grid_is_reduced_to_the_lr_picked_on_dev_per_task_before_any_table():
    rows = []
    for seed in range(3):
        for lr, dev, test in ((1e-4, 60.0, 90.0), (1e-3, 70.0, 65.0)):  # test would prefer 1e-4: dev decides
            rows.append({"model": "m", "task": "sst2", "method": "dominant", "seed": seed, "lr": lr,
                         "dev_score": dev + seed, "test_score": test})
        for lr, dev in ((1e-4, 55.0), (1e-3, 50.0)):  # on copa the other lr wins
            rows.append({"model": "m", "task": "copa", "method": "dominant", "seed": seed, "lr": lr,
                         "dev_score": dev, "test_score": 60.0})
        rows.append({"model": "m", "task": "sst2", "method": "zero_shot", "seed": seed, "lr": 0.0,
                     "dev_score": 50.0, "test_score": 50.0})
    table = pd.DataFrame(rows)
    with pytest.raises(DlzoError, match="tuned_runs"):
        method_table(table)  # two lrs per (task, method, seed) would be averaged: refused
    tuned = tuned_runs(table)
    assert len(tuned) == 9 and set(tuned[tuned.task == "sst2"].query("method == 'dominant'").lr) == {1e-3}
    assert set(tuned[tuned.task == "copa"].lr) == {1e-4}
    assert method_table(tuned)[1].loc["sst2", "dominant"] == "65.0 ± 0.0 (3)"
    lrs = chosen_lrs(tuned)
    assert lrs.loc["sst2", "dominant"] == "1e-03" and lrs.loc["copa", "dominant"] == "1e-04"
    assert list(lrs.columns) == ["dominant"]  # zero-shot has no lr


def test_a_pick_made_before_every_lr_of_the_search_has_run_is_marked():
    from dlzo.experiments import grid_runs
    from dlzo.main_results import unfinished_searches

    grid = {"name": "g", "models": ["m"], "tasks": ["sst2", "copa"], "seeds": [0, 1], "lr_search_seeds": [0],
            "steps": 10, "methods": {"zero_shot": {}, "mezo_full": {"lr": 1e-5},
                                     "dominant": {"lr": [1e-4, 1e-3]}}}
    rows = []
    for run in grid_runs(grid):
        searched = run.task == "sst2" or run.lr != 1e-3  # copa's search has run 1e-4 only so far
        if run.seed == 0 and searched:
            rows.append({**run.as_dict(), "key": run.key, "dev_score": 50.0 + 1e4 * run.lr, "test_score": 60.0})
    table = pd.DataFrame(rows)
    assert unfinished_searches(grid, table) == {("copa", "dominant")}  # mezo_full has one lr: nothing to search
    lrs = chosen_lrs(tuned_runs(table, on_seeds=[0]), provisional=unfinished_searches(grid, table))
    assert lrs.loc["sst2", "dominant"] == "1e-03" and lrs.loc["copa", "dominant"] == "1e-04*"
    assert lrs.loc["copa", "mezo_full"] == "1e-05" and list(lrs.columns) == ["mezo_full", "dominant"]
    assert unfinished_searches(grid, table.iloc[:0]) == {("sst2", "dominant"), ("copa", "dominant")}


def test_pooled_claims_pair_every_model_task_and_seed_of_all_grids():
    small = results()
    big = results().assign(model="b", test_score=lambda d: d["test_score"] + (d["method"] == "mezo_full") * 4.0)
    pooled = pooled_claims({"grid_small": small, "grid_big": big})
    row = pooled[(pooled.b == "mezo_full") & (pooled.alternative == "two-sided")].iloc[0]
    assert row["n_pairs"] == 6 and row["mean_diff"] == pytest.approx((2.0 * 3 - 2.0 * 3) / 6)  # +2 on m, -2 on b
    assert row["wins"] == 3 and row["losses"] == 3
    assert set(pooled["grids"]) == {"grid_small + grid_big"} and set(pooled["models"]) == {"m, b"}
    assert "task" not in pooled
    with pytest.raises(DlzoError, match="at least one"):
        pooled_claims({})


def test_equivalence_tests_per_grid_and_pooled_per_margin_and_method():
    small = results()  # dominant − full MeZO: +2 on every seed of sst2
    big = results().assign(model="b", test_score=lambda d: d["test_score"] + (d["method"] == "mezo_full") * 4.0)
    tests = equivalence_tests({"small": small, "big": big}, margins=(1.0, 3.0))
    full = tests[tests.b == "mezo_full"].set_index(["grids", "margin"])
    assert list(dict.fromkeys(full.index.get_level_values(0))) == ["small", "big", "small + big"]
    assert full.loc[("small", 1.0), "mean_diff"] == pytest.approx(2.0) and not full.loc[("small", 1.0), "equivalent"]
    assert full.loc[("small + big", 3.0), "n_pairs"] == 6 and full.loc[("small + big", 3.0), "mean_diff"] == 0.0
    assert full.loc[("small", 1.0), "smallest_margin"] == pytest.approx(2.0)  # every difference is +2
    # 3 pairs cannot reach p < 0.05 in a one-sided Wilcoxon test: never equivalent, whatever the margin
    assert not full.loc[("small", 3.0), "equivalent"] and full.loc[("small", 3.0), "p_value"] == pytest.approx(0.125)
    assert set(tests.b) == {"mezo_full", "random_layer"} and set(tests.a) == {"dominant"}
    only_copa = results()[lambda d: d.task == "copa"]  # no full MeZO runs: the grid is left out
    assert equivalence_tests({"copa": only_copa}).empty
    with pytest.raises(DlzoError, match="at least one"):
        equivalence_tests({})
    with pytest.raises(DlzoError, match="margin must be a positive"):  # refused, not read as "no pairs"
        equivalence_tests({"small": small}, margins=(0.0,))


def test_ordered_methods_puts_the_papers_methods_first_then_the_rest_as_given():
    assert ordered_methods(["random_layer", "my_variant", "dominant", "zero_shot", "another"]) == [
        "zero_shot", "dominant", "random_layer", "my_variant", "another"]


def test_step_zero_picks_counts_runs_that_kept_the_untouched_model_and_why():
    rows = [  # lr 0: zero-shot, not a trained run; rows before session 14 have no dev_curve
        {"model": "m", "task": "sst2", "method": "zero_shot", "seed": 0, "lr": 0.0, "best_step": None},
        {"model": "m", "task": "sst2", "method": "fo_full", "seed": 0, "lr": 1e-5, "best_step": 0,
         "dev_curve": "[[0, 0.95, 58.8], [125, 0.56, 83.8], [250, 0.96, 85.0]]"},  # confidently right: loss up, acc up
        {"model": "m", "task": "sst2", "method": "fo_full", "seed": 1, "lr": 1e-5, "best_step": 125,
         "dev_curve": "[[0, 0.95, 58.8], [125, 0.56, 83.8]]"},
        {"model": "m", "task": "sst2", "method": "mezo_full", "seed": 0, "lr": 1e-6, "best_step": 0,
         "dev_curve": "[[0, 0.70, 60.0], [500, 0.72, 59.0]]"},  # worse on both: step 0 rightly kept
        {"model": "m", "task": "sst2", "method": "mezo_full", "seed": 1, "lr": 1e-6, "best_step": 0},
    ]
    picks = step_zero_picks(pd.DataFrame(rows)).set_index("method")
    assert list(picks.index) == ["fo_full", "mezo_full"]  # the table's method order; zero-shot is not trained
    assert picks.loc["fo_full"].to_dict() == {"trained": 2, "step_zero": 1, "with_curve": 1, "higher_later": 1}
    assert picks.loc["mezo_full"].to_dict() == {"trained": 2, "step_zero": 2, "with_curve": 1, "higher_later": 0}
    assert step_zero_picks(pd.DataFrame(rows).drop(columns="best_step")).empty


def test_markdown_table_uses_readable_names_the_papers_task_order_and_bolds_the_best():
    rows = results()
    rows = pd.concat([rows, rows[(rows.task == "copa") & (rows.method == "dominant")].assign(method="mezo_full"),
                      rows[rows.task == "sst2"].assign(task="wsc", test_score=57.7)], ignore_index=True)
    text = markdown_table(rows, ["zero_shot", "mezo_full", "dominant"]).splitlines()
    assert text[0] == "| task | zero-shot | full MeZO | dominant layer |" and text[1] == "|---|---|---|---|"
    assert [line.split(" | ")[0] for line in text[2:]] == ["| SST-2", "| WSC", "| COPA", "| average (3 tasks)"]
    assert text[2] == "| SST-2 | 50.0 ± 0.0 (3) | 71.0 ± 1.0 (3) | **73.0 ± 1.0 (3)** |"
    assert "**" not in text[3]  # WSC: every method at 57.7, nothing to mark
    assert text[4] == "| COPA | **61.0 ± 0.0 (3)** | 58.0 ± 0.0 (3) | 58.0 ± 0.0 (3) |"


def test_claims_markdown_shows_the_pooled_rows_with_typographic_minus():
    text = claims_markdown(claim_tests(results())).splitlines()
    assert text[0] == "| claim | pairs | a − b (95% CI) | wins / losses | Wilcoxon p |"
    assert len(text) == 2 + 3  # dominant vs full MeZO twice (two-sided, less), vs random layer once
    assert text[2] == "| dominant layer vs full MeZO | 3 | +2.0 [2.0, 2.0] | 3 / 0 | 0.250 (two-sided) |"
    assert text[4].startswith("| dominant layer vs random layer | 3 | +13.0 ") and "(one-sided, a > b)" in text[4]
    behind = results().assign(test_score=lambda d: d.test_score - (d.method == "dominant") * 20.0)
    assert "| −18.0 [−18.0, −18.0] | 0 / 3 |" in claims_markdown(claim_tests(behind))
    with pytest.raises(DlzoError, match="No pooled claim rows"):
        claims_markdown(claim_tests(results()).query("task != 'all'"))


def test_grid_markdown_tunes_the_lr_and_refuses_grids_with_several_runs_per_cell():
    table = pd.concat([results().assign(lr=1e-3, dev_score=60.0),
                       results().assign(lr=1e-4, dev_score=50.0, test_score=0.0)], ignore_index=True)
    text = grid_markdown({"name": "g", "lr_search_seeds": [0]}, table)
    assert "| SST-2 | 50.0 ± 0.0 (3) | 71.0 ± 1.0 (3) | **73.0 ± 1.0 (3)** | 60.0 ± 0.0 (3) |" in text  # the 1e-3 runs
    assert "| claim |" in text
    layers = pd.concat([results().assign(layer=0), results().assign(layer=1)], ignore_index=True)
    with pytest.raises(DlzoError, match="more than once per task and seed"):
        grid_markdown({"name": "every_layer"}, layers)
    with pytest.raises(DlzoError, match="no finished runs"):
        grid_markdown({"name": "g"}, pd.DataFrame())


@pytest.mark.parametrize("grid_file", ["experiments/main_smollm2.yaml", "experiments/main_qwen2.5-0.5b.yaml"])
def test_the_readme_shows_each_main_table_as_the_committed_results_give_it(grid_file):
    from dlzo.notebook import grid_results
    from dlzo.paths import repo_root

    grid, table = grid_results(grid_file)
    block = grid_markdown(grid, table)
    readme = (repo_root() / "README.md").read_text()
    assert replace_marked_block(readme, block_marker(grid_file), block) == readme, (
        f"README.md's table of {grid['name']} is not what results/{grid['name']} gives; run "
        f"`dlzo sweep {grid_file} --markdown --into README.md` (tools/gpu-lease/merge.py does after a lease)")


def test_a_marked_block_is_replaced_whole_and_can_be_replaced_again():
    marker = block_marker("experiments/g.yaml")
    assert marker == "<!-- dlzo sweep experiments/g.yaml --markdown -->"
    text = f"# Results\nbefore\n{marker}\nold table\nold claims\n{BLOCK_END}\nafter\n"
    once = replace_marked_block(text, marker, "| new |\n")
    assert once == f"# Results\nbefore\n{marker}\n\n| new |\n\n{BLOCK_END}\nafter\n"
    assert replace_marked_block(once, marker, "| new |") == once  # idempotent: the markers stay
    with pytest.raises(DlzoError, match="README.md has no line '<!-- dlzo sweep experiments/h.yaml"):
        replace_marked_block(text, block_marker("experiments/h.yaml"), "x", name="README.md")
    with pytest.raises(DlzoError, match="has more than one line"):
        replace_marked_block(text + text, marker, "x")
    with pytest.raises(DlzoError, match="no line '<!-- end of dlzo sweep output -->' after"):
        replace_marked_block(f"{marker}\nold\n", marker, "x")
