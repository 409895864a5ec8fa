"""Record the Slurm/torchrun view of the process that runs it (toy workflow of tests/slurm).

  probe.py job OUT.json    one JSON object: Slurm job id, partition, CUDA_VISIBLE_DEVICES, ...
  probe.py rank OUT_DIR    (under torchrun) OUT_DIR/rank<RANK>.json with the rank's view

Standard library only, so that each torchrun rank starts in milliseconds.
"""

import json
import os
import sys
from pathlib import Path

KEYS = (
    "SLURM_JOB_ID", "SLURM_JOB_PARTITION", "SLURM_JOB_ACCOUNT", "SLURM_RESTART_COUNT",
    "SLURM_NTASKS", "SLURM_STEP_ID", "CUDA_VISIBLE_DEVICES",
    "RANK", "LOCAL_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE",
)


def view() -> dict:
    return {k: os.environ.get(k) for k in KEYS} | {"pid": os.getpid()}


def main(argv: list[str]) -> int:
    if len(argv) != 2 or argv[0] not in ("job", "rank"):
        print("usage: probe.py job OUT.json | probe.py rank OUT_DIR", file=sys.stderr)
        return 2
    mode, target = argv
    out = Path(target)
    if mode == "rank":
        out.mkdir(parents=True, exist_ok=True)
        out = out / f"rank{os.environ['RANK']}.json"
    else:
        out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(view(), indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
