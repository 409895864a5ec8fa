"""DeepSpeed ZeRO glue for the trainer (`deepspeed: true`, `zero_stage: 2 | 3`).

What the trainer needs from DeepSpeed, and nothing more:
- `ds_config(cfg, bf16)`: the engine config. Gradient accumulation is caller-owned
  (`managed_gradient_accumulation: false`): we run as many `engine.backward` calls as the token
  budget asks and exactly ONE `engine.step()` per mini-batch (the paper: one per rollout step).
  Clipping is DeepSpeed's (`gradient_clipping`); bf16 keeps fp32 master weights in the ZeRO
  optimizer and bf16 params in the module (CUDA); on CPU everything stays fp32.
- `initialize(model, optimizer, cfg, bf16)`: `deepspeed.initialize` with our torch AdamW (a
  torch optimizer avoids DeepSpeed's FusedAdam JIT build) and without the CPU shared-memory
  all-reduce op (a ~45 s JIT build, used only by inference all-reduce; training collectives go
  through torch.distributed either way).
- `loss_scale_for_ranks()`: DeepSpeed AVERAGES gradients over data-parallel ranks, our loss is
  already normalised by global (all-rank) denominators and expects a SUM; multiplying the loss by
  the world size undoes the average (tests/test_zero.py checks the update equals one process).
- `full_state_dict(model)`: the fp32 weights for HF checkpoints / vLLM sync, gathered from the
  ZeRO partitions (a collective: every rank must call it).
"""

from __future__ import annotations

import os
import socket
import sys


def available() -> bool:
    try:
        import deepspeed  # noqa: F401
    except Exception:  # ImportError or a broken accelerator probe
        return False
    return True


def ds_config(cfg, bf16: bool, cuda: bool) -> dict:
    return {
        "train_micro_batch_size_per_gpu": 1,  # bookkeeping only: we feed token-budget micro-batches
        "gradient_accumulation_steps": 1,
        "managed_gradient_accumulation": False,  # we decide when the boundary is: engine.step()
        "gradient_clipping": float(cfg.grad_clip),
        "zero_optimization": {
            "stage": int(cfg.zero_stage),
            "contiguous_gradients": True,
            # overlapping reduction with backward needs CUDA streams; on CPU it only adds copies
            "overlap_comm": bool(cuda) and int(cfg.zero_stage) == 2,
            "reduce_bucket_size": 5e8,
            "allgather_bucket_size": 5e8,
        },
        "bf16": {"enabled": bool(bf16)},
        "fp16": {"enabled": False},
        "zero_allow_untested_optimizer": True,  # torch AdamW is what the paper's verl uses
        "steps_per_print": 10 ** 9,
        "wall_clock_breakdown": False,
    }


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _skip_cpu_shm_op() -> None:
    """DeepSpeed's CPU backend JIT-compiles a shared-memory all-reduce at init (≈45 s, needs a compiler);
    it only serves `inference_all_reduce`, so training runs identically without it."""
    mod = sys.modules.get("deepspeed.comm.torch")
    if mod is not None and getattr(mod, "build_shm_op", None) is not None:
        mod.build_shm_op = lambda: None


def init_distributed() -> None:
    import deepspeed
    import torch

    if not torch.distributed.is_initialized():  # single process: DeepSpeed still wants a process group
        os.environ.setdefault("RANK", "0")
        os.environ.setdefault("LOCAL_RANK", "0")
        os.environ.setdefault("WORLD_SIZE", "1")
        if os.environ["WORLD_SIZE"] == "1" and "MASTER_PORT" not in os.environ:
            # a file rendezvous: a probed free TCP port can be taken again before the store listens on it
            # (EADDRINUSE seen on CPU test runs); DeepSpeed then reuses this group
            import atexit
            import shutil
            import tempfile

            store_dir = tempfile.mkdtemp(prefix="rlvr-pg-")
            atexit.register(shutil.rmtree, store_dir, ignore_errors=True)
            path = os.path.join(store_dir, "store")
            torch.distributed.init_process_group("nccl" if torch.cuda.is_available() else "gloo",
                                                 init_method=f"file://{path}", rank=0, world_size=1)
        os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
        os.environ.setdefault("MASTER_PORT", str(_free_port()))
    elif torch.distributed.get_world_size() == 1:
        # a one-process group someone else started (vLLM in the same process does) without the launcher's
        # variables: DeepSpeed's engine asserts LOCAL_RANK is set
        os.environ.setdefault("LOCAL_RANK", "0")
    if not torch.cuda.is_available():
        import deepspeed.comm.torch  # noqa: F401  (make the module patchable)

        _skip_cpu_shm_op()
    deepspeed.init_distributed(dist_backend="nccl" if torch.cuda.is_available() else "gloo",
                               auto_mpi_discovery=False)


def initialize(model, optimizer, cfg, bf16: bool):
    """Wrap `model` + `optimizer` in a DeepSpeed engine; returns the engine (engine.module is `model`)."""
    import deepspeed
    import torch

    init_distributed()
    engine, _opt, _, _ = deepspeed.initialize(model=model, optimizer=optimizer,
                                              config=ds_config(cfg, bf16, torch.cuda.is_available()))
    return engine


def loss_scale_for_ranks() -> float:
    import torch.distributed as dist

    return float(dist.get_world_size()) if dist.is_initialized() else 1.0


def begin_micro_batch(engine) -> None:
    """What `engine.forward()` does before a forward pass that we skip by calling the HF decoder
    directly: ZeRO-3 counts micro-steps there, and without it every backward OVERWRITES the
    accumulated gradient partition instead of adding to it (found by tests/test_zero.py)."""
    clear = getattr(engine.optimizer, "clear_backward_seen_flag", None)
    if clear is not None:
        clear()


def is_zero3(model) -> bool:
    return any(hasattr(p, "ds_id") for p in model.parameters())


def full_state_dict(model) -> dict:
    """fp32 copy (on CPU) of every state-dict entry, gathered from ZeRO partitions (collective)."""
    import torch
    from deepspeed.utils import safe_get_full_fp32_param

    full: dict[int, torch.Tensor] = {}
    for _, p in model.named_parameters():  # deduplicated: a tied weight is gathered once
        hp = safe_get_full_fp32_param(p)
        full[id(p)] = (hp if hp is not None else p.detach()).float().cpu().clone()
    out = {}
    by_id = {name: id(p) for name, p in model.named_parameters(remove_duplicate=False)}
    for k, v in model.state_dict().items():
        out[k] = full[by_id[k]] if k in by_id else v.detach().float().cpu().clone()
    return out
