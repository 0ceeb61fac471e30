"""One small ZO run with checkpoints, shared by the resume test and the subprocess it kills.

Usage: python tests/zo_resume_run.py OUT_DIR DELAY_SECONDS   (DELAY slows every forward so the run can be
killed mid-way).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from zo_helpers import lm_eval_fn, lm_loss_fn, tiny_llama, token_examples  # noqa: E402

from dlzo.selection import Selection  # noqa: E402
from dlzo.training import ZOConfig, train  # noqa: E402

CONFIG = ZOConfig(steps=60, lr=2e-3, eps=1e-3, batch_size=8, optimizer="adam", directions=2, eval_every=10,
                  checkpoint_every=4)


def run(out_dir, resume: bool = False, delay: float = 0.0):
    model = tiny_llama()
    loss_fn = lm_loss_fn(model)

    def slow_loss(batch):
        time.sleep(delay)
        return loss_fn(batch)

    result = train(model, Selection(layers=[1, 2]), slow_loss, token_examples(64), CONFIG,
                   eval_fn=lm_eval_fn(token_examples(16, seed=1)), out_dir=out_dir, resume=resume, progress=False)
    return result, model


if __name__ == "__main__":
    torch.set_num_threads(1)
    run(sys.argv[1], delay=float(sys.argv[2]))
