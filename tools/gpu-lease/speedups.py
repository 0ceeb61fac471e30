"""Per-task step times of SmolLM2-135M on the GPU (notebook 05's speed-up by input length), as a CSV.

    python3 tools/gpu-lease/speedups.py results/bench/task_speedups_h200.csv
"""
import sys

from dlzo.bench import task_speedups
from dlzo.models import load_model
from dlzo.notebooks import load_params

model, tokenizer = load_model("smollm2-135m", device="cuda", progress=False)
cases = ("mezo_published_full", "dlzo_full", "dlzo_dominant", "dlzo_full_graphed", "dlzo_dominant_graphed",
         "dlzo_dominant_paired_graphed")
# notebook 05's tasks, short to long inputs
table = task_speedups(model, tokenizer, load_params("full")["speedup_tasks"], dominant_layer=11, cases=cases,
                      warmup=3, repeats=10)
table["device"] = "NVIDIA H200"
table["float32_matmul"] = "ieee"
table.to_csv(sys.argv[1], index=False)
print(table.round(2).to_string())
