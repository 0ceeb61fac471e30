"""Candidate scoring: MeZO's tokenisation (leading spaces, BOS, left truncation) and the batched scorer equal
to one forward per candidate, on a tiny random model and on the real SmolLM2 (and Gemma-3, which adds a
BOS)."""

import pytest
import torch
from tasks_support import shared_data, smollm2, smollm2_tokenizer, tiny_model

from dlzo.errors import DlzoError
from dlzo.scoring import (
    encode_continuations,
    pack_sequences,
    packed_logits,
    score_candidates,
    score_candidates_one_by_one,
)
from dlzo.tasks import load_task_data


def examples(name: str, n: int) -> list[dict]:
    return load_task_data(name, seed=0, data_dir=shared_data()).test[:n]


def test_candidate_tokens_are_the_tail_of_the_concatenation():
    tokenizer = smollm2_tokenizer()
    [(ids, n)] = encode_continuations(tokenizer, "A fine film . It was", [" great"], 2048)
    assert n == 1 and tokenizer.convert_ids_to_tokens(ids[-1:]) == ["Ġgreat"]  # one token, space included
    assert ids == tokenizer("A fine film . It was great")["input_ids"]
    [(ids, n)] = encode_continuations(tokenizer, "The man turned on the faucet so",
                                      [" water flowed from the spout."], 2048)
    assert tokenizer.decode(ids[-n:]) == " water flowed from the spout."


def test_bos_is_kept_and_truncation_is_on_the_left():
    tokenizer = smollm2_tokenizer(add_bos=True)
    bos = tokenizer.bos_token_id
    [(ids, n)] = encode_continuations(tokenizer, "one two three four five six seven eight", [" nine"], 2048)
    assert ids[0] == bos and n == 1
    [(short, n)] = encode_continuations(tokenizer, "one two three four five six seven eight", [" nine"], 5)
    assert len(short) == 5 and short[0] == bos and short[1:] == ids[-4:]


def test_empty_context_gets_a_start_token():
    # SFC with an empty calibration prompt and a tokenizer without BOS: the candidate needs a token before it
    tokenizer = smollm2_tokenizer()
    [(ids, n)] = encode_continuations(tokenizer, "", ["Yes"], 2048)
    assert ids == [tokenizer.bos_token_id, *tokenizer("Yes")["input_ids"]] and n == 1


def test_continuation_too_long_is_an_error():
    with pytest.raises(DlzoError, match="does not fit max_length=4"):
        encode_continuations(smollm2_tokenizer(), "x", [" a b c d e f"], 4)


@pytest.mark.parametrize("name", ["sst2", "cb", "copa", "rte"])
@pytest.mark.parametrize("add_bos", [False, True])
def test_batched_equals_one_by_one_on_a_tiny_model(name, add_bos):
    model, tokenizer = tiny_model(), smollm2_tokenizer(add_bos)
    task, batch = load_task_data(name, data_dir=shared_data()).task, examples(name, 5)
    max_length = 48 if name == "rte" else None  # RTE prompts exceed 48 tokens: left truncation on the way
    for calibrate in (False, True):
        with torch.inference_mode():
            batched = score_candidates(model, tokenizer, task, batch, max_length, calibrate)
        reference = score_candidates_one_by_one(model, tokenizer, task, batch, max_length, calibrate)
        torch.testing.assert_close(batched, reference, atol=1e-5, rtol=0)


def test_candidates_with_the_same_input_share_a_row():
    model, tokenizer = tiny_model(), smollm2_tokenizer()
    shapes = []
    def record(module, args, kwargs):
        shapes.append(tuple(kwargs["input_ids"].shape))

    hook = model.register_forward_pre_hook(record, with_kwargs=True)
    try:
        with torch.inference_mode():
            for name in ("sst2", "cb", "copa"):
                score_candidates(model, tokenizer, load_task_data(name, data_dir=shared_data()).task,
                                 examples(name, 4))
    finally:
        hook.remove()
    # single-token verbalizers after one prompt need one row per example; COPA's two choices need two
    assert [rows for rows, _ in shapes] == [4, 4, 8]


def test_the_head_projects_only_the_scored_points():
    model = tiny_model()
    sequences = [([5, 6, 7, 8], 1), ([5, 6, 7, 9], 1), ([1, 2, 3, 4, 5, 6, 7], 3), ([9, 9, 4], 2)]
    packed = pack_sequences(sequences)
    widths = []
    hook = model.get_output_embeddings().register_forward_hook(lambda m, a, out: widths.append(out.shape))
    try:
        with torch.inference_mode():
            logits = packed_logits(model, packed)
            full = model(input_ids=packed.input_ids, attention_mask=packed.attention_mask).logits
    finally:
        hook.remove()
    # 7 scored tokens; the two single-token candidates after [5, 6, 7] share one point: 6 points
    assert len(packed.point) == 7 and logits.shape == (6, model.config.vocab_size) and widths[0][:2] == (1, 6)
    expected = full[packed.point_row, packed.keep[packed.point_column]]
    torch.testing.assert_close(logits, expected, atol=1e-5, rtol=1e-5)


@pytest.mark.real_model
@pytest.mark.parametrize("name, n", [("sst2", 4), ("cb", 2), ("copa", 4)])
def test_batched_equals_one_by_one_on_smollm2(name, n):
    model, tokenizer = smollm2()
    task, batch = load_task_data(name, data_dir=shared_data()).task, examples(name, n)
    for calibrate in (False, True):
        with torch.inference_mode():
            batched = score_candidates(model, tokenizer, task, batch, calibrate=calibrate)
        reference = score_candidates_one_by_one(model, tokenizer, task, batch, calibrate=calibrate)
        assert torch.equal(batched.argmax(1), reference.argmax(1))
        # float32 sums in a different order (padded batch vs single row): agreement to a few 1e-6
        torch.testing.assert_close(batched, reference, atol=5e-5, rtol=0)


@pytest.mark.real_model
def test_batched_equals_one_by_one_on_gemma3_with_bos():
    from dlzo.models import load_model

    try:
        model, tokenizer = load_model("gemma3-270m")
    except DlzoError as exc:
        pytest.skip(str(exc))
    assert tokenizer("x")["input_ids"][0] == tokenizer.bos_token_id
    for name in ("sst2", "copa"):
        task, batch = load_task_data(name, data_dir=shared_data()).task, examples(name, 2)
        with torch.inference_mode():
            batched = score_candidates(model, tokenizer, task, batch)
        reference = score_candidates_one_by_one(model, tokenizer, task, batch)
        torch.testing.assert_close(batched, reference, atol=5e-5, rtol=0)
