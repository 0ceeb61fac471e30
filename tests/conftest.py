"""Shared test setup: one CPU thread (the machine is shared). The helpers (zo_helpers, zo_resume_run) are
imported from this folder, which pytest puts on sys.path."""

import torch

torch.set_num_threads(1)
