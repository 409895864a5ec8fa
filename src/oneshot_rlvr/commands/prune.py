"""`rlvr prune`: delete evaluated checkpoints per the retention policy, never the best one.

Prints (and with --out writes) the retention report: policy, kept/deleted steps, bytes kept
(`bytes_kept` checkpoints, `bytes_state` resumable state, `bytes_run` the whole run directory) and
`bytes_freed`. Light: no torch import (it runs as a local job of the workflow)."""

from __future__ import annotations

import json


def add_arguments(p):
    p.add_argument("--run-dir", required=True, help="run directory (train/checkpoints/, best.json)")
    p.add_argument("--policy", default="all", help="all | evaluated-best | none-after-eval")
    p.add_argument("--keep-optimizer", default="last",
                   help="last (keep the resumable state of the newest step) | none (delete it once training is done)")
    p.add_argument("--out", help="write the retention report (JSON) here")
    p.add_argument("--dry-run", action="store_true", help="report what would be deleted, delete nothing")
    p.add_argument("--benchmarks", help="the run's benchmarks (comma-separated): a step counts as evaluated only "
                   "once each has eval/step_<k>/<bench>/summary.json and best.json ranked it "
                   "(default: best.json's complete steps)")


def run(args) -> int:
    from oneshot_rlvr.fileio import check_out_file, write_atomic
    from oneshot_rlvr.retention import prune

    if args.out:  # before deleting anything: a bad --out must not cost checkpoints and then fail
        check_out_file(args.out, "--out")
    benchmarks = [b for b in (args.benchmarks or "").split(",") if b]
    report = prune(args.run_dir, args.policy, args.dry_run, benchmarks or None, keep_optimizer=args.keep_optimizer)
    text = json.dumps(report, indent=1)
    if args.out:  # atomically: the workflow marker exists only once the pruning is finished
        write_atomic(args.out, text + "\n")
    print(text)
    return 0
