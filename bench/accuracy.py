"""Top-1 root-cause accuracy on ../shared/corpus, on the project's mined corpus
(tests/corpus, per batch, beside each batch's first-look score) and on gpualert-eval.

For gpualert-eval, our signature ids are mapped onto its 15 classes by the table below;
accuracy and macro-F1 are reported on all its logs and on its wild subset, next to the
figures GPUAlert published (0.998 and 0.958). Every miss is listed with what we said.

usage: python bench/accuracy.py [--shared ../shared] [--quiet]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from forensics.catalog import load_catalog  # noqa: E402
from forensics.inputs.sources import discover  # noqa: E402
from forensics.pipeline import Analyzer  # noqa: E402

#: our signature id -> GPUAlert class; any other failure maps by its exception type:
#: RuntimeError -> "runtime_error", anything else -> "traceback"
GPUALERT_CLASS = {
    "cuda-oom": "cuda_oom",
    "nccl-abort": "nccl", "nccl-timeout": "nccl", "nccl-other": "nccl", "fsdp-hang": "nccl",
    "p2p-rtx4000": "nccl", "rendezvous-failure": "nccl",
    "cuda-device-assert": "cuda_runtime", "cuda-illegal-access": "cuda_runtime",
    "cuda-xid": "cuda_runtime", "cuda-ecc": "cuda_runtime", "cuda-arch-mismatch": "cuda_runtime",
    "cublas-error": "cuda_runtime", "cudnn-error": "cuda_runtime", "cuda-error": "cuda_runtime",
    "cuda-driver-mismatch": "cuda_runtime",
    "cpu-alloc-failure": "ram_oom",
    "host-oom-sigkill": "oom_killer", "slurm-oom-kill": "oom_killer",
    "segfault": "segfault",
    "file-not-found": "file_not_found",
    "permission-denied": "permission",
    "module-not-found": "missing_module", "shared-library-missing": "missing_module",
    "flash-attn-import": "missing_module", "bitsandbytes-setup": "missing_module",
    "zero-division": "div_zero",
    "device-mismatch": "device_mismatch",
    "nan-loss": "nan_loss",
    "assertion-error": "assertion",
}
PUBLISHED = {"all": 0.998, "wild": 0.958}


def gpualert_class(report: dict) -> str:
    root = report["root_cause"]
    if root is None:
        return "none"
    signature = root["signature"]
    if signature in GPUALERT_CLASS:
        return GPUALERT_CLASS[signature]
    # GPUAlert's last two classes are exception types: a bare RuntimeError, or any other
    if (root["exception_type"] or "").rsplit(".", 1)[-1] == "RuntimeError":
        return "runtime_error"
    return "traceback"


def macro_f1(pairs: list[tuple[str, str]]) -> float:
    labels = sorted({want for want, _ in pairs})
    scores = []
    for label in labels:
        tp = sum(1 for want, got in pairs if want == label and got == label)
        fp = sum(1 for want, got in pairs if want != label and got == label)
        fn = sum(1 for want, got in pairs if want == label and got != label)
        precision = tp / (tp + fp) if tp + fp else 0.0
        recall = tp / (tp + fn) if tp + fn else 0.0
        scores.append(2 * precision * recall / (precision + recall) if precision + recall else 0.0)
    return sum(scores) / len(scores)


def analyze_paths(analyzer: Analyzer, paths: list[str]) -> dict:
    sources, problems = discover(paths)
    return analyzer.analyze_sources(sources, problems).to_dict()


def cases(corpus: Path) -> list[Path]:
    """The case folders of a corpus (each holds meta.json)."""
    return sorted(p for p in corpus.iterdir() if (p / "meta.json").is_file())


def score(analyzer: Analyzer, folders: list[Path], quiet: bool) -> tuple[int, int]:
    """(right, scored) over the given cases; misses are listed."""
    hits = total = 0
    for case in folders:
        meta = json.loads((case / "meta.json").read_text())
        if meta.get("evidence_in_log") is False:
            continue
        total += 1
        want = [meta["signatures"][0], *meta.get("accept", [])]
        inputs = [str(p) for p in sorted(case.iterdir()) if p.name != "meta.json"]
        root = analyze_paths(analyzer, inputs)["root_cause"]
        got = root["signature"] if root else "none"
        if got in want:
            hits += 1
        elif not quiet:
            print(f"  miss {case.name}: want {want[0]}, got {got}")
    return hits, total


def our_corpus(analyzer: Analyzer, corpus: Path, quiet: bool) -> None:
    hits, total = score(analyzer, cases(corpus), quiet)
    print(f"../shared/corpus: top-1 {hits}/{total} = {hits / total:.3f}")


def mined_corpus(analyzer: Analyzer, corpus: Path, quiet: bool) -> None:
    """Each batch (the case id's prefix, `ma-001` is batch `ma`) today, beside its first
    look (before any rule was written for it)."""
    first = json.loads((corpus / "first_look.json").read_text())["batches"]
    batches: dict[str, list[Path]] = {}
    for case in cases(corpus):
        batches.setdefault(case.name.split("-")[0], []).append(case)
    all_hits = all_total = look_hits = look_total = 0
    for batch, folders in sorted(batches.items()):
        hits, total = score(analyzer, folders, quiet)
        look = first.get(batch)
        seen = (f"first look {look['hits']}/{look['total']} = "
                f"{look['hits'] / look['total']:.3f} at {look['scored_at']}" if look else
                "no first look recorded")
        print(f"tests/corpus batch {batch}: top-1 {hits}/{total} = {hits / total:.3f}  ({seen})")
        all_hits, all_total = all_hits + hits, all_total + total
        if look:
            look_hits, look_total = look_hits + look["hits"], look_total + look["total"]
    print(f"tests/corpus overall: top-1 {all_hits}/{all_total} = {all_hits / all_total:.3f}; "
          f"first looks {look_hits}/{look_total} = {look_hits / max(look_total, 1):.3f}")


def gpualert(analyzer: Analyzer, root: Path, quiet: bool) -> None:
    rows = [json.loads(line) for line in (root / "labels.jsonl").read_text().splitlines()]
    results = []
    for row in rows:
        report = analyze_paths(analyzer, [str(root.parent / row["log_path"])])
        got = gpualert_class(report)
        results.append((row, got, report))
    for subset in ("all", "wild"):
        chosen = [(r["mode"], got) for r, got, _ in results
                  if subset == "all" or r["source"] == "wild"]
        accuracy = sum(w == g for w, g in chosen) / len(chosen)
        print(f"gpualert-eval {subset:>4} ({len(chosen)} logs): accuracy {accuracy:.3f}, "
              f"macro-F1 {macro_f1(chosen):.3f}  (GPUAlert published {PUBLISHED[subset]})")
    misses = [(r, got, rep) for r, got, rep in results if got != r["mode"]]
    if not quiet:
        for row, got, report in misses:
            sig = (report["root_cause"] or {}).get("signature")
            print(f"  miss {row['id']}: want {row['mode']}, got {got} ({sig})")
    print("  confusion (want -> got):", dict(Counter((r["mode"], g) for r, g, _ in misses)))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--shared", default=str(ROOT.parent / "shared"))
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args()
    shared = Path(args.shared)
    analyzer = Analyzer(load_catalog())
    start = time.perf_counter()
    our_corpus(analyzer, shared / "corpus", args.quiet)
    mined_corpus(analyzer, ROOT / "tests" / "corpus", args.quiet)
    gpualert(analyzer, shared / "external" / "gpualert-eval" / "corpus", args.quiet)
    print(f"({time.perf_counter() - start:.1f} s)")


if __name__ == "__main__":
    main()
