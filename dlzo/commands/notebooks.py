"""``dlzo notebooks``: execute the project's notebooks headlessly with a parameter set."""

from __future__ import annotations

import argparse
import time

from ..errors import DlzoError


def add_parser(sub) -> None:
    p = sub.add_parser(
        "notebooks",
        help="execute notebooks with papermill (params/ci.yaml or params/full.yaml)",
        description="Execute the numbered notebooks under notebooks/ with a parameter set. With --params full "
        "the executed notebooks replace the committed ones; with --params ci they become the CI snapshots "
        "in notebooks/ci/ that nbval checks.",
    )
    p.add_argument("names", nargs="*", help="notebooks to run (e.g. 01 or 01_discovery); default: all")
    p.add_argument("--params", default="ci", help="ci, full, or a YAML file (default: ci)")
    p.add_argument("--out", default=None,
                   help="folder (from the repo root) for the executed notebooks AND their figures/results "
                   "(default: see above; figures/results then follow the parameter set's output_dir)")
    p.add_argument("--timeout", type=int, default=3600, help="per-cell timeout in seconds")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..notebooks import find_notebook, notebook_paths, project_root, run_notebook

    paths = [find_notebook(n) for n in args.names] if args.names else notebook_paths()
    if not paths:
        raise DlzoError("There are no notebooks under notebooks/ to run.")
    if args.out:
        out_dir = project_root() / args.out
    elif args.params == "ci":
        out_dir = project_root() / "notebooks" / "ci"
    else:
        out_dir = project_root() / "notebooks"
    for path in paths:
        start = time.perf_counter()
        overrides = {"output_dir": args.out} if args.out else None
        target = run_notebook(path, params=args.params, output=out_dir / path.name, timeout=args.timeout,
                              overrides=overrides)
        print(f"{path.stem}: {time.perf_counter() - start:.1f} s -> {target.relative_to(project_root())}")
    return 0
