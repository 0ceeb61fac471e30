"""Figures: deterministic files, outlier-layer marks, the layer-sweep plot."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from dlzo.plotting import layer_axes, mark_outlier_layers, plot_layer_curves, plot_layer_sweep, save_figure  # noqa: E402


def test_saved_figures_are_byte_stable(tmp_path):
    fig, ax = plt.subplots()
    ax.plot([0, 1, 2], [1, 3, 2])
    first = [p.read_bytes() for p in save_figure(fig, "f", tmp_path / "a")]
    second = [p.read_bytes() for p in save_figure(fig, "f", tmp_path / "b")]
    plt.close(fig)
    assert first == second and b"CreationDate" not in first[1]


def test_outlier_layers_are_marked_once_each_and_labelled():
    fig, axes = plt.subplots(1, 2)
    for ax in axes:
        ax.plot(range(30), range(30), label="signal")
    layer_axes(axes, strict_layer=11, loose_layer=2, legend_title="eps")
    for ax in axes:
        labels = [t.get_text() for t in ax.get_legend().get_texts()]
        assert labels == ["signal", "first outlier layer, strict (11)", "looser rule (2)"]
        assert ax.get_xlabel() == "decoder layer" and ax.get_legend().get_title().get_text() == "eps"
    _, ax = plt.subplots()
    mark_outlier_layers(ax, strict_layer=0, loose_layer=0)  # the same layer by both rules: one line
    mark_outlier_layers(ax, strict_layer=None, loose_layer=None)  # a model without outliers: nothing
    assert len(ax.get_lines()) == 1
    plt.close("all")


def test_layer_sweep_plot_shows_layers_references_and_marks():
    summary = pd.DataFrame({"layer": [0, 1, 2], "mean": [60.0, 70.0, 65.0], "std": [1.0, 2.0, 1.5]})
    refs = pd.DataFrame({"kind": ["full", "zero_shot"], "mean": [68.0, 50.0], "std": [1.0, float("nan")]})
    ax = plot_layer_sweep(summary, refs, strict_layer=1, loose_layer=0, title="t")
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert "full MeZO (68.0)" in labels and "zero-shot (50.0)" in labels
    assert "first outlier layer, strict (1)" in labels and ax.get_title() == "t"
    plt.close("all")


def test_layer_curves_draw_one_line_per_sweep_and_mark_the_outlier_layer():
    zo = pd.DataFrame({"layer": [0, 1, 2], "mean": [52.0, 71.0, 80.0]})
    fo = pd.DataFrame({"layer": [0, 1, 2], "mean": [83.0, 85.0, 84.0]})
    ax = plot_layer_curves({"ZO": zo, "first order": fo}, strict_layer=1, ylabel="sst2 (%)")
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels[:2] == ["ZO", "first order"] and "first outlier layer, strict (1)" in labels
    drawn = sorted(tuple(line.get_ydata()) for line in ax.get_lines() if len(line.get_ydata()) == 3)
    assert drawn == [(52.0, 71.0, 80.0), (83.0, 85.0, 84.0)] and ax.get_ylabel() == "sst2 (%)"
    plt.close("all")
