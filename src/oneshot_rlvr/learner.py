"""A module being trained and how it steps: fp32 masters, AdamW, the fork's lr schedule, DeepSpeed.

The actor (the policy) and, under `adv_estimator: gae`, the critic are each one `Learner`: the same
precision (fp32 master weights; bf16 compute either through a bf16 module whose masters the optimizer
steps, `precision: bf16-params`, or autocast over fp32 parameters), the same AdamW and schedule, and the
same micro-batch protocol — `zero_grad`, per micro-batch `begin_micro_batch` + `backward(loss, w)`, then
ONE `step` (cross-rank gradient sum, clip, optimizer step) per mini-batch.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import torch

from oneshot_rlvr.errors import TrainingError


def lr_factor(schedule: str, warmup: int, s: int) -> float:
    """The learning-rate factor of update s = 0, 1, ... (`lr_schedule`). An update is one rollout step's
    `update()` call, whatever its number of optimizer steps: the scheduler steps once after it, as the fork
    steps its scheduler once per update_actor / update_critic call. verl02: the fork's
    get_constant_schedule_with_warmup, min(1, s / max(1, warmup)), whose first step has lr 0 even without
    warm-up; hf: transformers' constant schedule with warm-up, the full lr from the first step when
    warmup is 0."""
    if schedule == "verl02":
        return min(1.0, s / max(1, warmup))
    return s / warmup if s < warmup else 1.0


@dataclass
class Learner:
    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR
    grad_clip: float
    master: object = None  # precision.MasterWeights under bf16-params
    ds: object = None  # the DeepSpeed engine under `deepspeed: true` (its module is `model`)
    autocast: torch.dtype | None = None  # the dtype of autocast around forward passes (precision: autocast)

    @classmethod
    def build(cls, model, cfg, device: str, dtype: torch.dtype, lr: float, weight_decay: float) -> "Learner":
        """Wrap `model` (fp32 parameters): masters, AdamW(lr, cfg.betas, cfg.adam_eps, weight_decay), the
        `lr_schedule` with `lr_warmup_steps`, grad clip `grad_clip`, and the DeepSpeed engine if asked."""
        bf16_params = dtype != torch.float32 and cfg.precision == "bf16-params" and not cfg.deepspeed
        master = None
        if bf16_params:
            from oneshot_rlvr.precision import MasterWeights

            master = MasterWeights(model, dtype)  # fp32 copies first, then the module -> bf16
        params = master.parameters() if master is not None else list(model.parameters())
        # the fused CUDA kernel: the same AdamW update in one launch instead of a few per parameter group
        fused = device.startswith("cuda") and not cfg.deepspeed
        optimizer = torch.optim.AdamW(params, lr=lr, betas=tuple(cfg.betas), eps=cfg.adam_eps,
                                      weight_decay=weight_decay, fused=fused or None)
        scheduler = torch.optim.lr_scheduler.LambdaLR(
            optimizer, functools.partial(lr_factor, cfg.lr_schedule, cfg.lr_warmup_steps))
        ds = None
        if cfg.deepspeed:
            from oneshot_rlvr import zero

            # bf16 params + fp32 master weights in the ZeRO optimizer on CUDA; fp32 throughout on CPU. The ZeRO
            # optimizer keeps the torch optimizer's param_group dicts, so the scheduler still drives lr
            ds = zero.initialize(model, optimizer, cfg, dtype == torch.bfloat16 and device.startswith("cuda"))
            model._rlvr_zero3 = zero.is_zero3(model)
        autocast = dtype if dtype != torch.float32 and not bf16_params else None
        return cls(model, optimizer, scheduler, cfg.grad_clip, master, ds, autocast)

    def params(self) -> list:
        """The parameters the optimizer steps: the fp32 masters under bf16-params, else the module's own."""
        return self.master.parameters() if self.master is not None else list(self.model.parameters())

    def weights(self):
        """Who holds the fp32 weights that states and checkpoints store: the masters, else the module."""
        return self.master if self.master is not None else self.model

    def zero_grad(self) -> None:
        if self.ds is None:
            self.optimizer.zero_grad(set_to_none=True)

    def begin_micro_batch(self) -> None:
        if self.ds is not None:
            from oneshot_rlvr.zero import begin_micro_batch

            begin_micro_batch(self.ds)

    def backward(self, loss: torch.Tensor, w: float) -> None:
        """Add the gradient of w·loss (w: the micro-batch's weight in the mini-batch mean)."""
        if self.ds is not None:
            # DeepSpeed averages gradients over ranks; our denominators are global and want a sum
            from oneshot_rlvr.zero import loss_scale_for_ranks

            self.ds.backward(loss * (w * loss_scale_for_ranks()), scale_wrt_gas=False)
        else:
            (loss * w).backward()
            if self.master is not None:
                self.master.accumulate()  # fp32 accumulation over micro-batches

    def step(self, step: int, what: str = "") -> float:
        """The mini-batch boundary: sum gradients over ranks, clip, ONE optimizer step. Returns the gradient
        norm before clipping; a non-finite one raises before the step (DeepSpeed: after, nothing saved)."""
        import torch.distributed as dist

        name = f"{what} gradient norm" if what else "gradient norm"
        if self.ds is not None:
            self.ds.step()  # reduce, clip (DeepSpeed's gradient_clipping), step
            gn = self.ds.get_global_grad_norm()
            norm = float(gn) if gn is not None else float("nan")
            if not torch.isfinite(torch.tensor(norm)):
                raise TrainingError(f"step {step}: non-finite {name} ({norm}); stopping without saving, the last "
                                    "checkpoint is intact")
            return norm
        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            for prm in self.params():
                if prm.grad is not None:
                    dist.all_reduce(prm.grad)
        norm = torch.nn.utils.clip_grad_norm_(self.params(), self.grad_clip)
        if not torch.isfinite(norm):
            raise TrainingError(f"step {step}: non-finite {name} ({norm.item()}); stopping before the optimizer "
                                "step, the last checkpoint is intact")
        self.optimizer.step()
        if self.master is not None:
            self.master.push()
        # free the fp32 gradients now, not at the next step's zero_grad: 4 bytes/param (6.2 GB on the 1.5B
        # model) that the rollout's KV cache can use instead
        self.optimizer.zero_grad(set_to_none=True)
        return norm.item()
