"""The PPO critic (`adv_estimator: gae`, the paper's PPO rows: Tables 4, 11 and 17, experiment E20).

What the authors' verl 0.2 fork does with `algorithm.adv_estimator=gae` (official-repo.md E20: the
GRPO script with a critic and the yaml's defaults):
- the critic is `AutoModelForTokenClassification` with one label, from the same base model (a new
  linear `score` head on the final hidden state; dropout 0), fp32 master weights, bf16 compute;
- its own AdamW: `critic_lr` 1e-5, weight decay 0.01, the fork's constant schedule (first step lr 0),
  grad clip 1.0; token-budget micro-batches of `critic_micro_batch_tokens` (32,768);
- the critic's mini-batch is its `ppo_mini_batch_size` of 128 taken as SEQUENCES (the fork multiplies the
  actor's by n, not the critic's): 1,024 / 128 = 8 critic optimizer steps per rollout step
  (`critic_mini_batch_seqs`). The j-th step takes the j-th 16 of each emulated GPU's balanced 128, as the
  fork's (`GRPOTrainer.mini_batches`; under `agg` other than verl02: consecutive sequences);
- value positions (verl's `values[:, -L-1:-1]` times the attention mask shifted by one): a response of T
  tokens gets min(T + 1, max_response_length) values — V_t of the state before response token t
  (t < T) and V_T of the state after its last token, which verl keeps, bootstraps from in GAE and trains
  toward its return (0 at gamma = lam = 1). The actor's advantages cover the T response tokens;
- per step: values (before the update) → GAE over token rewards (the score on the last response
  token) → whitening over every response token of the batch → critic update → actor update (from step
  `critic_warmup` on).
"""

from __future__ import annotations

import contextlib

import torch

from oneshot_rlvr import algos, packing
from oneshot_rlvr.errors import RlvrError
from oneshot_rlvr.learner import Learner
from oneshot_rlvr.modeling import check_model_path
from oneshot_rlvr.trainer import _padded_hidden, pad_flat


def n_values(response_len: int, max_response_length: int) -> int:
    """How many value positions a response of `response_len` tokens has (see the module docstring)."""
    return min(response_len + 1, max_response_length)


def load_value_model(path: str, key: str = "model"):
    """The critic's module: the base model's decoder with a fresh one-output `score` head (fp32, CPU)."""
    import transformers
    from transformers import AutoConfig, AutoModelForTokenClassification

    check_model_path(path, key)
    verbosity = transformers.logging.get_verbosity()
    transformers.logging.set_verbosity_error()  # the new head and the unused lm_head are expected, not news
    try:
        config = AutoConfig.from_pretrained(path, num_labels=1)
        config.classifier_dropout = 0.0  # verl's critic config (as a from_pretrained keyword it is ignored)
        return AutoModelForTokenClassification.from_pretrained(path, config=config, dtype=torch.float32)
    except Exception as exc:  # corrupt weights, or an architecture without a token-classification class
        raise RlvrError(f"config key '{key}': cannot load a value model from {path}: {type(exc).__name__}: {exc}") from None
    finally:
        transformers.logging.set_verbosity(verbosity)


class Critic:
    def __init__(self, cfg, device: str, dtype: torch.dtype):
        self.cfg = cfg
        path = cfg.critic_model or cfg.model
        model = load_value_model(path, "critic_model" if cfg.critic_model else "model").to(device)
        if cfg.sequence_packing:
            packing.enable(model, cfg.packed_attention, device, dtype)
        if cfg.gradient_checkpointing:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.config.use_cache = False
        self.model = model
        self.learner = Learner.build(model, cfg, device, dtype, cfg.critic_lr, cfg.critic_weight_decay)

    # -- forward -------------------------------------------------------------------------------
    def forward(self, seqs: list[tuple[list[int], list[int]]]) -> torch.Tensor:
        """Values of every value position of `seqs` = [(prompt_ids, response_ids)], flat (fp32), in order."""
        device = next(self.model.parameters()).device
        counts = [n_values(len(r), self.cfg.max_response_length) for _, r in seqs]
        ac = self.learner.autocast
        ctx = torch.autocast(device_type=device.type, dtype=ac) if ac else contextlib.nullcontext()
        decoder = self.model.model
        # the actor's batch layouts, with one more position per sequence (the state after its last token)
        if packing.enabled(self.model):
            batch = packing.pack(seqs, counts)
            with ctx:
                hidden = decoder(**packing.decoder_kwargs(self.model, batch)).last_hidden_state
            h = hidden[0, batch.rows.to(device)]
        else:
            h, _ = _padded_hidden(decoder, seqs, device, ctx, counts)
        with ctx:
            v = self.model.score(self.model.dropout(h)).squeeze(-1)
        return v.float()

    def values(self, seqs, plan: list[list[int]]) -> list[torch.Tensor]:
        """No-grad values per sequence (on the CPU), computed over the micro-batches `plan`."""
        self.model.eval()
        out: list[torch.Tensor] = [None] * len(seqs)  # type: ignore[list-item]
        with torch.no_grad():
            for mb in plan:
                v = self.forward([seqs[i] for i in mb])
                sizes = [n_values(len(seqs[i][1]), self.cfg.max_response_length) for i in mb]
                for i, part in zip(mb, torch.split(v.cpu(), sizes)):
                    out[i] = part
        return out

    def micro_loss(self, seqs, old_values: list[torch.Tensor], returns: list[torch.Tensor], mb: list[int]):
        """The clipped value loss of micro-batch `mb` and its reported terms (vf_loss, vf_clipfrac, vpred_mean)."""
        self.model.train()
        sizes = [old_values[i].numel() for i in mb]
        vpred, mask = pad_flat(self.forward([seqs[i] for i in mb]), sizes)
        dev = vpred.device
        old = pad_flat(torch.cat([old_values[i] for i in mb]).to(dev), sizes)[0]
        ret = pad_flat(torch.cat([returns[i] for i in mb]).to(dev), sizes)[0]
        inner = algos.within_micro_batch(self.cfg.agg)
        loss, clipfrac = algos.value_loss(vpred, old, ret, mask, self.cfg.cliprange_value, inner)
        return loss, torch.stack([loss, clipfrac, algos.masked_mean(vpred.detach(), mask)])


def token_rewards(scores: torch.Tensor, lengths: list[int], width: int) -> torch.Tensor:
    """[B, width] token rewards: each sequence's score on its last response token (verl's reward manager)."""
    r = torch.zeros((len(lengths), width), dtype=torch.float32)
    r[torch.arange(len(lengths)), torch.tensor(lengths) - 1] = scores.to(torch.float32)
    return r

