"""The two halves of a task loss (pack / compute), static-shape padding, and CUDA-graph forwards: the padded
pack gives the same sums, the ZO engine with ``cuda_graphs`` is the eager engine where graphs do not apply
(CPU, failed capture), and on a GPU the replayed graphs reproduce the eager losses (skipped without CUDA)."""

import warnings

import pytest
import torch
from tasks_support import shared_data, smollm2_tokenizer, tiny_model

from dlzo.graphs import GraphedLoss
from dlzo.losses import TaskLoss, classification_loss, lm_loss, make_loss_fn
from dlzo.scoring import candidate_logprobs, pack_sequences, packed_sums, target_logprobs
from dlzo.selection import Selection
from dlzo.tasks import load_task_data
from dlzo.zo import ZOEngine


def batch_of(name: str, n: int = 6) -> tuple:
    data = load_task_data(name, seed=0, data_dir=shared_data())
    return data.task, data.train[:n]


@pytest.mark.parametrize("name", ["sst2", "copa", "cb"])
def test_task_loss_is_pack_then_compute_and_matches_the_scorer(name):
    model, tokenizer = tiny_model(), smollm2_tokenizer()
    task, batch = batch_of(name)
    loss_fn = make_loss_fn(model, tokenizer, task)
    assert isinstance(loss_fn, TaskLoss)
    with torch.inference_mode():
        whole = loss_fn(batch)
        halves = loss_fn.compute(loss_fn.pack(batch))
        if task.loss_type == "classification":
            sums, counts = candidate_logprobs(model, tokenizer, task, batch, loss_fn.limit)
            direct = classification_loss(sums, counts, torch.tensor([task.label(ex) for ex in batch]))
        else:
            sums, counts = target_logprobs(model, tokenizer, [task.prompt(ex) for ex in batch],
                                           [task.target(ex) for ex in batch], loss_fn.limit)
            direct = lm_loss(sums, counts)
    assert whole.shape == () and torch.equal(whole, halves) and torch.equal(whole, direct)


def test_padding_to_static_shapes_keeps_every_sum():
    model = tiny_model()
    sequences = [([5, 6, 7, 8], 1), ([5, 6, 7, 9], 1), ([1, 2, 3, 4, 5, 6, 7], 3), ([9, 9], 1)]
    packed = pack_sequences(sequences)
    padded = packed.padded(width=16, rows=8, keep=16, tokens=16)
    assert padded.input_ids.shape == (8, 16) and padded.keep.shape == (16,) and padded.point.shape == (16,)
    assert packed.input_ids.shape[0] == 3  # the two single-token candidates after one prompt share a row
    assert (padded.attention_mask.sum(1) > 0).all()  # no empty attention row
    with torch.inference_mode():
        sums, counts = packed_sums(model, packed)
        padded_sums, padded_counts = packed_sums(model, padded)
    torch.testing.assert_close(padded_sums, sums, atol=2e-6, rtol=0)
    assert torch.equal(counts, padded_counts) and padded.shape_key != packed.shape_key
    assert padded.padded(width=16, rows=8, keep=16, tokens=16).shape_key == padded.shape_key  # idempotent


@pytest.mark.parametrize("name", ["sst2", "copa"])
def test_padded_task_loss_equals_the_unpadded_one(name):
    model, tokenizer = tiny_model(), smollm2_tokenizer()
    task, batch = batch_of(name, 8)
    loss_fn = make_loss_fn(model, tokenizer, task)
    packed = loss_fn.pack(batch)
    with torch.inference_mode():
        torch.testing.assert_close(loss_fn.compute(packed.padded()), loss_fn.compute(packed), atol=2e-6, rtol=0)


def test_graphs_are_off_on_the_cpu_and_the_engine_is_unchanged():
    model, tokenizer = tiny_model(), smollm2_tokenizer()
    task, batch = batch_of("sst2", 8)
    loss_fn = make_loss_fn(model, tokenizer, task)
    graphed = GraphedLoss(loss_fn, prefix_layer=1)
    assert not graphed.active and "CUDA" in graphed.failed and graphed.prepare(batch) is None
    estimates = []
    for flag in (False, True):
        engine = ZOEngine(Selection(layers=[1]).apply(model, tokenizer), eps=1e-3, share_prefix=True, cuda_graphs=flag)
        estimates.append(engine.estimate(loss_fn, batch, [3]))
    assert estimates[0].g == estimates[1].g and estimates[0].loss_plus == estimates[1].loss_plus


def test_a_failed_capture_warns_once_and_falls_back(monkeypatch):
    import dlzo.graphs as graphs

    class FakeModel:
        device = torch.device("cuda")

    class FakeLoss:
        model = FakeModel()

        def pack(self, batch):
            return pack_sequences([([1, 2, 3], 1)])

    def broken(*args, **kwargs):
        raise RuntimeError("operation not permitted when stream is capturing")

    monkeypatch.setattr(graphs, "_ShapeGraphs", broken)
    graphed = GraphedLoss(FakeLoss())
    assert graphed.active
    with pytest.warns(UserWarning, match="CUDA graphs are off"):
        assert graphed.prepare([{}]) is None
    assert not graphed.active and "stream is capturing" in graphed.failed
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no second warning
        assert graphed.prepare([{}]) is None


cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA graphs need a GPU")


@cuda
@pytest.mark.parametrize("prefix_layer", [None, 1])
def test_cuda_graph_losses_equal_the_eager_forward(prefix_layer):
    model, tokenizer = tiny_model(), smollm2_tokenizer()
    model = model.to("cuda")
    try:
        task, batch = batch_of("sst2", 8)
        loss_fn = make_loss_fn(model, tokenizer, task)
        graphed = GraphedLoss(loss_fn, prefix_layer=prefix_layer)
        with torch.inference_mode():
            eager = float(loss_fn.compute(loss_fn.pack(batch).padded()))
        run = graphed.prepare(batch)
        assert run is not None, graphed.failed
        assert abs(float(run(0)) - eager) < 1e-6 and abs(float(run(1)) - eager) < 1e-6
        engine = ZOEngine(Selection(layers=[1]).apply(model, tokenizer), share_prefix=True, cuda_graphs=True)
        reference = ZOEngine(Selection(layers=[1]).apply(model, tokenizer), share_prefix=True)
        a, b = engine.estimate(loss_fn, batch, [5]), reference.estimate(loss_fn, batch, [5])
        assert abs(a.g[0] - b.g[0]) < 1e-2 * max(1.0, abs(b.g[0]))
        assert len(graphed.shapes) == 1
    finally:
        model.to("cpu")


@cuda
def test_every_shape_warms_up_and_captures_on_one_side_stream(monkeypatch):
    """cuBLAS keeps a workspace per stream it has seen: a new stream per shape would grow memory per shape."""
    import dlzo.graphs as graphs

    model, tokenizer = tiny_model(), smollm2_tokenizer()
    model = model.to("cuda")
    captured = []
    real_graph = torch.cuda.graph
    monkeypatch.setattr(torch.cuda, "graph", lambda g, **kw: captured.append(kw.get("stream")) or real_graph(g, **kw))
    try:
        task, batch = batch_of("sst2", 8)
        loss_fn = make_loss_fn(model, tokenizer, task)
        graphed = GraphedLoss(loss_fn)
        assert graphed.prepare(batch[:2]) is not None and graphed.prepare(batch) is not None, graphed.failed
        assert len(graphed.shapes) == 2
        side = graphs._side_stream(model.device)
        assert captured and all(stream is side for stream in captured)
        assert side is graphs._side_stream(torch.device("cuda", torch.cuda.current_device()))
    finally:
        model.to("cpu")
