"""fp32 master weights for a module that computes in bf16 (`precision: bf16-params`, the default).

`precision: autocast` instead keeps the module's parameters in fp32 and runs its matmuls under
bf16 autocast: every linear casts its fp32 weight and activation to bf16 (in the forward, the
gradient-checkpoint recompute and the backward) and the residual stream stays fp32. `bf16-params` is
what verl's FSDP actor (the paper's code: MixedPrecision param_dtype bf16, reduce_dtype fp32) and
DeepSpeed bf16 do: the module itself is bf16, the optimizer steps fp32 copies.

`MasterWeights` owns those copies: gradients of each micro-batch are added into fp32 `.grad`s of the
masters (so accumulation over micro-batches is fp32, as FSDP's fp32 gradient reduce), the optimizer,
clipping and the cross-rank sum act on the masters, and `push()` writes them back into the module.
"""

from __future__ import annotations

import torch


def cast_parameters(model: torch.nn.Module, dtype: torch.dtype) -> torch.nn.Module:
    """Cast `model`'s floating-point parameters to `dtype` in place, leaving its buffers as they are.

    `model.to(bf16)` would also round RoPE's `inv_freq` buffer to bf16: a phase error that grows with
    the position (radians at a few thousand tokens), so the trained policy would not be the one vLLM
    samples and evaluates (fp32 rotary table). FSDP's mixed precision (the paper's verl: buffer_dtype
    fp32), `from_pretrained(dtype=bf16)` and DeepSpeed >= 0.19 all keep buffers fp32 too.
    """
    for p in model.parameters():
        if p.is_floating_point():
            p.data = p.data.to(dtype)  # the same Parameter objects, new data
    return model


class MasterWeights:
    def __init__(self, model: torch.nn.Module, dtype: torch.dtype):
        """Take fp32 masters from `model`'s current (fp32) parameters, then cast the module to `dtype`."""
        self.model = model
        named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
        self.master = [torch.nn.Parameter(p.detach().to(torch.float32).clone()) for _, p in named]
        cast_parameters(model, dtype)  # the module's Parameter objects stay the same objects
        self.params = [p for _, p in named]
        # every state_dict key of a parameter (tied weights have two) -> its master
        by_id = {id(p): m for p, m in zip(self.params, self.master)}
        self._by_key = {n: by_id[id(p)] for n, p in model.named_parameters(remove_duplicate=False)
                        if id(p) in by_id}

    def parameters(self) -> list[torch.nn.Parameter]:
        return self.master

    @torch.no_grad()
    def accumulate(self) -> None:
        """Add the module's (bf16) gradients of the last backward into the masters' fp32 grads; free them."""
        for p, m in zip(self.params, self.master):
            if p.grad is None:
                continue
            if m.grad is None:
                m.grad = p.grad.to(torch.float32)
            else:
                m.grad.add_(p.grad)
            p.grad = None

    @torch.no_grad()
    def push(self) -> None:
        """Write the masters into the module (rounded to its dtype)."""
        for p, m in zip(self.params, self.master):
            p.copy_(m)

    def state_dict(self) -> dict[str, torch.Tensor]:
        """The module's state dict with every parameter replaced by its fp32 master (what checkpoints store)."""
        sd = self.model.state_dict()
        return {k: (self._by_key[k].detach() if k in self._by_key else v) for k, v in sd.items()}

    @torch.no_grad()
    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        """Load fp32 weights (a state written by `state_dict`) into the masters, then into the module."""
        missing = [k for k in self._by_key if k not in state]
        if missing:
            raise KeyError(f"state has no weights for {missing[:3]}")
        for k, m in self._by_key.items():
            m.copy_(state[k])
        self.model.load_state_dict({k: v for k, v in state.items() if k not in self._by_key}, strict=False)
        self.push()
