"""ZO optimizers: one step of each checked by hand; weight decay skips vectors; state round-trips."""

import pytest
import torch

from dlzo import DlzoError
from dlzo.optim import make_optimizer

LR, WD = 0.1, 0.5


def masters():
    return [torch.tensor([[1.0, -2.0], [0.5, 4.0]]), torch.tensor([3.0, -1.0])]


def grads():
    return [torch.tensor([[0.2, 0.4], [-1.0, 0.0]]), torch.tensor([1.0, -0.5])]


def step_all(opt, ms, gs):
    opt.begin_step()
    return [opt.update(i, m, g, LR) for i, (m, g) in enumerate(zip(ms, gs, strict=True))]


def test_sgd_is_mezo_update_with_decay_on_matrices_only():
    ms, gs = masters(), grads()
    new = step_all(make_optimizer("sgd", ms, weight_decay=WD), ms, gs)
    assert torch.allclose(new[0], ms[0] - LR * (gs[0] + WD * ms[0]))
    assert torch.allclose(new[1], ms[1] - LR * gs[1])  # a vector: no decay
    assert torch.equal(ms[0], masters()[0])  # the master is not modified in place


def test_momentum_accumulates():
    ms, gs = masters(), grads()
    opt = make_optimizer("momentum", ms, weight_decay=WD, momentum=0.9)
    first = step_all(opt, ms, gs)
    buf0 = gs[0] + WD * ms[0]
    assert torch.allclose(first[0], ms[0] - LR * buf0)
    second = step_all(opt, first, gs)
    buf1 = 0.9 * buf0 + gs[0] + WD * first[0]
    assert torch.allclose(second[0], first[0] - LR * buf1)
    assert torch.allclose(second[1], first[1] - LR * (0.9 * gs[1] + gs[1]))


def test_adam_bias_corrected_with_decoupled_decay():
    ms, gs = masters(), grads()
    b1, b2, eps = 0.9, 0.99, 1e-8
    opt = make_optimizer("adam", ms, weight_decay=WD, betas=(b1, b2), eps=eps)
    first = step_all(opt, ms, gs)
    for i, decay in ((0, WD), (1, 0.0)):
        m, v = (1 - b1) * gs[i], (1 - b2) * gs[i] ** 2
        expected = ms[i] - LR * (m / (1 - b1)) / ((v / (1 - b2)).sqrt() + eps) - LR * decay * ms[i]
        assert torch.allclose(first[i], expected)
    second = step_all(opt, first, gs)
    m, v = b1 * (1 - b1) * gs[0] + (1 - b1) * gs[0], b2 * (1 - b2) * gs[0] ** 2 + (1 - b2) * gs[0] ** 2
    expected = first[0] - LR * (m / (1 - b1**2)) / ((v / (1 - b2**2)).sqrt() + eps) - LR * WD * first[0]
    assert torch.allclose(second[0], expected)


def test_sign_uses_the_sign_of_the_estimate():
    ms, gs = masters(), grads()
    new = step_all(make_optimizer("sign", ms, weight_decay=WD), ms, gs)
    assert torch.allclose(new[0], ms[0] - LR * (gs[0].sign() + WD * ms[0]))
    assert torch.allclose(new[1], ms[1] - LR * gs[1].sign())
    assert new[0][1, 1] == ms[0][1, 1] - LR * WD * ms[0][1, 1]  # sign(0) = 0: only the decay moves it


@pytest.mark.parametrize("name", ["sgd", "momentum", "adam", "sign"])
def test_state_round_trips_and_continues_identically(name):
    ms, gs = masters(), grads()
    opt = make_optimizer(name, ms, weight_decay=WD)
    after = step_all(opt, ms, gs)
    tensors, scalars = opt.state_dict()
    assert all(t.dtype == torch.float32 for t in tensors.values())
    clone = make_optimizer(name, masters(), weight_decay=WD)
    clone.load_state_dict({k: v.clone() for k, v in tensors.items()}, scalars)
    a, b = step_all(opt, after, gs), step_all(clone, after, gs)
    assert all(torch.equal(x, y) for x, y in zip(a, b, strict=True))


def test_optimizer_errors():
    with pytest.raises(DlzoError, match="Unknown ZO optimizer"):
        make_optimizer("lion", masters())
    with pytest.raises(DlzoError, match="optimizer the run started with"):
        make_optimizer("adam", masters()).load_state_dict({}, {"name": "sgd", "steps": 1})


@pytest.mark.parametrize("name", ["sgd", "momentum", "adam", "sign"])
@pytest.mark.parametrize("wd", [0.0, WD])
def test_the_in_place_step_gives_the_bits_of_the_returned_update(name, wd):
    gen = torch.Generator().manual_seed(0)
    shapes = [(37, 129), (1001,), (3, 5, 7)]  # odd sizes: vectorised bodies and scalar tails
    ms = [torch.randn(s, generator=gen) for s in shapes]
    gs = [torch.randn(s, generator=gen) for s in shapes]
    returned, in_place = make_optimizer(name, ms, weight_decay=wd), make_optimizer(name, ms, weight_decay=wd)
    a, b = [m.clone() for m in ms], [m.clone() for m in ms]
    for _ in range(3):
        returned.begin_step()
        in_place.begin_step()
        for i in range(len(shapes)):
            a[i].copy_(returned.update(i, a[i], gs[i].clone(), 1e-3))
            in_place.step_(i, b[i], gs[i].clone(), 1e-3)
    assert all(torch.equal(x, y) for x, y in zip(a, b, strict=True))
