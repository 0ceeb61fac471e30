"""The README and docs/ name files of this repository; each must exist (moves and renames break them)."""

import glob
import itertools
import re

from dlzo.paths import repo_root

DOCUMENTS = ["README.md", "docs/engineering-notes.md", "experiments/README.md"]
FOLDERS = ("results/", "docs/", "notebooks/", "experiments/", "figures/", "tools/", "dlzo/", "tests/", "params/",
           "scripts/")
WRITTEN_BY_USERS = ("results/paper_",)  # what the README tells a 7B user their own runs will write


def expand_braces(path: str) -> list[str]:
    """``a_{x,y}.json`` -> ``a_x.json``, ``a_y.json`` (the README's shorthand for sibling files)."""
    match = re.search(r"\{([^}]*)\}", path)
    if not match:
        return [path]
    return list(itertools.chain.from_iterable(
        expand_braces(path[:match.start()] + option + path[match.end():]) for option in match.group(1).split(",")))


def named_paths(text: str) -> set[str]:
    """Repository paths written in backticks or as Markdown link targets."""
    named = set(re.findall(r"`([A-Za-z0-9_.\-{},/*]+)`", text)) | set(re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text))
    return {path for path in named if path.startswith(FOLDERS) and not path.startswith(WRITTEN_BY_USERS)}


def test_expand_braces_gives_every_sibling():
    assert expand_braces("b_{fp32,tf32}.json") == ["b_fp32.json", "b_tf32.json"]
    assert expand_braces("m{a,b}/x{1,2}") == ["ma/x1", "ma/x2", "mb/x1", "mb/x2"]


def test_named_paths_reads_backticks_and_links_of_repository_folders():
    text = "see `results/bench/a.json`, [notes](docs/n.md#x), `dlzo sweep`, `results/paper_x/` and `http://e`"
    assert named_paths(text) == {"results/bench/a.json", "docs/n.md"}


def test_every_file_the_documents_name_exists():
    root = repo_root()
    missing, checked = [], 0
    for document in DOCUMENTS:
        for named in sorted(named_paths((root / document).read_text())):
            for path in expand_braces(named):
                checked += 1
                found = glob.glob(str(root / path)) if "*" in path else (root / path).exists()
                if not found:
                    missing.append(f"{document}: {path}")
    assert checked > 50  # the README alone names ~45 files: finding few means the pattern broke
    assert not missing, "documents name files that do not exist: " + "; ".join(missing)
