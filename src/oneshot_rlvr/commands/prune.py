"""`rlvr prune`: delete evaluated checkpoints per the retention policy, never the best one."""

from __future__ import annotations

import json


def add_arguments(p):
    p.add_argument("--run-dir", required=True, help="run directory (train/checkpoints/, best.json)")
    p.add_argument("--policy", default="all", help="all | evaluated-best | none-after-eval")
    p.add_argument("--out", help="write the retention report (JSON) here")
    p.add_argument("--dry-run", action="store_true", help="report what would be deleted, delete nothing")


def run(args) -> int:
    from oneshot_rlvr.retention import prune
    from oneshot_rlvr.trainer import _atomic_write_text

    report = prune(args.run_dir, args.policy, args.dry_run)
    text = json.dumps(report, indent=1)
    if args.out:
        from pathlib import Path

        _atomic_write_text(Path(args.out), text + "\n")
    print(text)
    return 0
