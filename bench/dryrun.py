"""Planning time of the paper workflow: `snakemake -n` on config/config.yaml (issue 4: <= 10 s).

Runs, in this process's environment and one after the other:
  1. baseline: `snakemake --version` (interpreter + Snakemake + executor-plugin start-up, no workflow);
  2. `snakemake -n --configfile config/config.yaml` (parse, validate the registry, build the DAG of
     every E1-E19 run and its evaluations), repeated --repeat times;
and prints wall and CPU seconds of each, the ratio to the baseline, and the planned jobs per rule.

Why the baseline matters: Snakemake imports every installed executor plugin at start-up, and the
Slurm plugin runs `scontrol show config` while importing (to pick its status command). On a login
node with a live slurmctld this answers in milliseconds; on a machine where the Slurm client is
installed but no controller answers, scontrol retries for up to 10 s (the plugin's timeout), which
shows up here as a slow baseline, not as slow planning. Where no `scontrol` is on PATH it costs nothing.

    .venv/bin/python bench/dryrun.py [--configfile config/config.yaml] [--repeat 3]
"""

from __future__ import annotations

import argparse
import collections
import os
import re
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def timed(cmd: list[str]) -> tuple[float, float, str]:
    """(wall s, CPU s of the child, stdout+stderr) of one command run from the repository root."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if proc.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed (exit {proc.returncode}):\n{proc.stdout[-2000:]}{proc.stderr[-2000:]}")
    return wall, cpu, proc.stdout + proc.stderr


def job_counts(out: str) -> dict[str, int]:
    """Per-rule counts from Snakemake's dry-run 'Job stats' table."""
    counts: dict[str, int] = collections.OrderedDict()
    in_table = False
    for line in out.splitlines():
        if line.startswith("job") and "count" in line:
            in_table = True
            continue
        if in_table:
            m = re.match(r"^(\w+)\s+(\d+)$", line.strip())
            if m:
                counts[m.group(1)] = int(m.group(2))
            elif counts and not line.strip().startswith("-"):
                break
    return counts


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--configfile", default="config/config.yaml")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    snakemake = shutil.which("snakemake", path=os.path.dirname(sys.executable) + os.pathsep + os.environ["PATH"])
    if snakemake is None:
        sys.exit("snakemake not found next to this Python or on PATH")

    scontrol = shutil.which("scontrol")
    print(f"scontrol on PATH: {scontrol or 'no'}; load average {os.getloadavg()[0]:.2f}")
    base_wall, base_cpu, _ = timed([snakemake, "--version"])
    print(f"baseline  snakemake --version        wall {base_wall:6.2f} s  cpu {base_cpu:5.2f} s")
    walls = []
    out = ""
    for i in range(args.repeat):
        wall, cpu, out = timed([snakemake, "-n", "--configfile", args.configfile])
        walls.append(wall)
        print(f"run {i + 1}     snakemake -n {args.configfile}  wall {wall:6.2f} s  cpu {cpu:5.2f} s  "
              f"({wall / base_wall:.1f}x baseline; planning alone ~{wall - base_wall:.1f} s)")
    counts = job_counts(out)
    total = counts.pop("total", sum(counts.values()))
    print(f"best of {args.repeat}: {min(walls):.2f} s wall; {total} jobs planned")
    for rule, n in counts.items():
        print(f"  {rule:20s} {n}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
