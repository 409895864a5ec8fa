"""`rlvr run-config`: write the RUN.yaml of one run (all RunConfig keys, resolved and validated).

The registry (oneshot_rlvr.registry) computes the run's overrides from the workflow config; the rule
passes them as JSON so that a change of any override reruns exactly the affected runs.
"""

from __future__ import annotations


def add_arguments(p):
    p.add_argument("--values", required=True, help="JSON object of RunConfig overrides")
    p.add_argument("--out", required=True, help="RUN.yaml to write")


def run(args) -> int:
    import json

    import yaml

    from oneshot_rlvr.config import from_dict
    from oneshot_rlvr.errors import ConfigError
    from oneshot_rlvr.fileio import write_atomic

    try:
        values = json.loads(args.values)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"--values is not valid JSON: {exc.msg}") from None
    rc = from_dict(values, source="--values")
    write_atomic(args.out, yaml.safe_dump(rc.to_dict(), sort_keys=False))
    print(f"run config -> {args.out}")
    return 0
