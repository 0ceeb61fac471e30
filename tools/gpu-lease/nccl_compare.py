"""Compare a one-GPU `dlzo train` run with the same run under torchrun --distributed (nccl.sh), as JSON.

    python3 tools/gpu-lease/nccl_compare.py /root/ddp1 /root/ddp2 $OUT/nccl.json
"""
import json
import statistics
import sys
from pathlib import Path

from safetensors.torch import load_file


def step_records(run: Path) -> list[dict]:
    return [r for r in map(json.loads, (run / "log.jsonl").read_text().splitlines()) if r.get("type") == "step"]


def summary(run: Path, records: list[dict]) -> dict:
    result = json.loads((run / "result.json").read_text())
    steps = records[10:]  # past warm-up and graph capture
    step_ms = [1e3 * (r["time_perturb"] + r["time_forward"] + r["time_update"]) for r in steps]
    return {"device": result["device"], "wall_time_s": result["wall_time_s"], "median_step_ms": statistics.median(step_ms),
            "returned_step": result["returned_step"], "best": result["best"], "final": result["final"]}


def main(one: str, two: str, out: str) -> None:
    a, b = load_file(Path(one) / "trained.safetensors"), load_file(Path(two) / "trained.safetensors")
    diff = max((a[k].float() - b[k].float()).abs().max().item() for k in a)
    scale = max(a[k].float().abs().max().item() for k in a)
    records = {run: step_records(Path(run)) for run in (one, two)}  # each log read once
    g1, g2 = ([r["g"] for r in records[run]] for run in (one, two))
    report = {"one_gpu": summary(Path(one), records[one]), "two_gpus_nccl": summary(Path(two), records[two]),
              "max_abs_param_diff": diff, "max_abs_param": scale, "tensors": len(a),
              # the whole trajectory, whatever step each run returned: the projected gradient of every step
              "steps_compared": min(len(g1), len(g2)),
              "max_abs_g_diff": max(abs(x - y) for x, y in zip(g1, g2)), "max_abs_g": max(map(abs, g1))}
    report["speedup_two_vs_one"] = report["one_gpu"]["median_step_ms"] / report["two_gpus_nccl"]["median_step_ms"]
    Path(out).write_text(json.dumps(report, indent=1))
    print(json.dumps({k: v for k, v in report.items() if not isinstance(v, dict)}, indent=1))
    print("step ms one / two:", report["one_gpu"]["median_step_ms"], report["two_gpus_nccl"]["median_step_ms"])


if __name__ == "__main__":
    main(*sys.argv[1:4])
