"""`rlvr train`: GRPO training from a run config; resumes from the newest complete state in --out."""

from __future__ import annotations


def add_arguments(p):
    p.add_argument("--config", help="run config YAML (keys of RunConfig; omitted keys take the paper's pi_1 recipe)")
    p.add_argument("--out", required=True, help="run directory: metrics.jsonl, checkpoints/, state/, done.json")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override one config key (repeatable), value parsed as YAML")
    p.add_argument("--restart-stale", action="store_true",
                   help="a run in --out that cannot be continued under this config (trained with another config, "
                        "or its resumable state was pruned) is started over, replacing what `rlvr train` wrote "
                        "there, instead of refused (the workflow passes this: Snakemake reruns train to "
                        "regenerate a run after its config changed or on --forcerun)")
    p.add_argument("--print-config", action="store_true", help="print the resolved config and exit")


def run(args) -> int:
    import yaml

    from oneshot_rlvr.config import load_run_config, parse_overrides
    from oneshot_rlvr.fileio import check_out_dir

    cfg = load_run_config(args.config, parse_overrides(args.overrides))
    if args.print_config:
        print(yaml.safe_dump(cfg.to_dict(), sort_keys=False))
        return 0
    check_out_dir(args.out)  # before the model is loaded: the trainer would fail only when it first writes
    from oneshot_rlvr.trainer import train

    last = train(cfg, args.out, restart_stale=args.restart_stale)
    if last:
        print(f"done: step {last['step']} reward {last['reward/mean']:.3f}")
    return 0
