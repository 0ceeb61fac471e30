"""Shared test setup: one CPU thread (the machine is shared) and the ZO-engine helpers on the path."""

import torch

torch.set_num_threads(1)
