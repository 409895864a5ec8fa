"""Helper for test_multirank.py: one GRPO update on a fixed batch, on 1 process or under torchrun.

usage: python multirank_update.py MODEL_DIR PI1_FILE OUT.pt AGG [ZERO_STAGE] [MICRO_BATCH_TOKENS] [SKEW] [LAYOUT] [ADV]
       [CRITIC_MINI]
Each rank takes its contiguous share of the prompt rows (whole groups), exactly as the trainer does.
ZERO_STAGE (2 or 3) runs the update through DeepSpeed (`deepspeed: true`); 0 or absent = plain path.
SKEW=1 gives prompt rows 2-3 long responses (30-60 tokens), so that with a small token budget the
two ranks run different numbers of micro-batches (the ranks then keep their own rows: no balancing; otherwise the
batch is balanced over ranks as the trainer does, `GRPOTrainer.balance`). LAYOUT: packed (default: sequence_packing, whose micro-batch
count is agreed over ranks) or padded (consecutive padded micro-batches, counted per rank). ADV: grpo (default) or
gae: PPO — the critic's values, GAE whitened over all ranks, one critic step on the whole batch, then the actor's step
(the critic's weights and stats are saved too) | kl: GRPO with the in-reward KL (kl_in_reward_coef 0.5, no KL loss,
the reference's weights scaled by 0.9 so the KL is not 0): advantages after balancing, from every rank's penalised
scores (`GRPOTrainer.grpo`; a group may then span ranks). CRITIC_MINI: sequences per critic optimizer step (default
16 = the whole batch, one step).
"""

import random
import sys

import torch

from oneshot_rlvr import algos
from oneshot_rlvr.config import from_dict
from oneshot_rlvr.trainer import GRPOTrainer, Rollout, _all_gather_list, _dist, _init_distributed, shard_rows


def main():
    model, pi1, out, agg = sys.argv[1:5]
    stage = int(sys.argv[5]) if len(sys.argv) > 5 else 0
    budget = int(sys.argv[6]) if len(sys.argv) > 6 else 24000
    skew = len(sys.argv) > 7 and sys.argv[7] == "1"
    packed = len(sys.argv) <= 8 or sys.argv[8] == "packed"
    mode = sys.argv[9] if len(sys.argv) > 9 else "grpo"
    adv_estimator = "gae" if mode == "gae" else "grpo"
    critic_mini = int(sys.argv[10]) if len(sys.argv) > 10 else 16
    _init_distributed()
    rank, world = _dist()
    extra = dict(deepspeed=True, zero_stage=stage) if stage else {}
    # adam_eps 1e-4 (paper 1e-8): Adam's first step lr·g/(|g|+eps) amplifies fp32 rounding differences of gradients
    # near eps by up to lr/(4·eps); 1e-4 keeps weights comparable to 1e-5 whatever the summation order, and small-
    # gradient updates linear in g (measurements: tests/test_zero.py's module doc)
    cfg = from_dict(dict(model=model, train_file=pi1, train_batch_size=4, n=4, engine="hf", lr=1e-3, lr_schedule="hf", agg=agg,
                         adam_eps=1e-4,
                         gradient_checkpointing=False, progress=False, tensorboard=False,
                         micro_batch_tokens=budget, sequence_packing=packed, adv_estimator=adv_estimator,
                         critic_mini_batch_seqs=critic_mini, critic_lr=1e-3, critic_micro_batch_tokens=budget,
                         **(dict(kl_in_reward_coef=0.5, kl_coef=0.0) if mode == "kl" else {}), **extra))
    t = GRPOTrainer(cfg, "/tmp/unused")
    t.setup()
    if mode == "kl":
        with torch.no_grad():
            for p in t.ref_model.parameters():
                p.mul_(0.9)
    rng = random.Random(0)
    prompt = t.rows[0].prompt_ids
    rows = []  # 4 prompt rows × 4 responses of varied length, fixed scores
    for g in range(4):
        for j in range(4):
            n_tok = rng.randint(30, 60) if (skew and g >= 2) else rng.randint(2, 9)
            rows.append((g, [rng.randrange(1000, 5000) for _ in range(n_tok)], float((g + j) % 3 == 0)))
    scores = torch.tensor([r[2] for r in rows])
    adv_all = algos.grpo_advantages(scores, torch.tensor([r[0] for r in rows]))
    groups = shard_rows(list(range(4)), rank, world)
    mine = [i for i, r in enumerate(rows) if r[0] in groups]
    ro = Rollout([prompt] * len(mine), [rows[i][1] for i in mine], torch.tensor([rows[i][0] for i in mine]),
                 [124] * len(mine), ["stop"] * len(mine), scores[mine], [False] * len(mine))
    adv_grpo = adv_all[mine]
    if not skew:  # the trainer's step: verl's _balance_batch over ranks (SKEW keeps the ranks uneven on purpose)
        ro, adv_grpo = t.balance(ro, adv_grpo)
    ref = t._logprobs(t.ref_model, ro, False)[0]
    # micro-batches per rank: the DeepSpeed path must cope with ranks that have different counts
    counts = _all_gather_list([len(t._plan([len(p) + len(r) for p, r in zip(ro.prompt_ids, ro.response_ids)]))])
    critic = {}
    if adv_estimator == "gae":
        seqs = list(zip(ro.prompt_ids, ro.response_ids))
        values = t.critic.values(seqs, t._plan([len(p) + len(r) for p, r in seqs], budget))
        adv, returns, gae_stats = t.gae(ro, values)
        from oneshot_rlvr.zero import full_state_dict

        critic = {"stats": {**gae_stats, **t.update_critic(1, ro, values, returns)},
                  "params": (full_state_dict(t.critic.model) if stage else  # (a collective: every rank gathers)
                             {k: v.detach().clone() for k, v in t.critic.model.state_dict().items()})}
    kl_stats = {}
    if mode == "kl":  # the trainer's order: balance, log-probs, penalty, then GRPO over every rank's scores
        old = t._logprobs(t.model, ro, False)[0]
        _, seq_rewards, kl_stats = t.kl_in_reward(ro, old, ref)
        adv_grpo = t.grpo(ro, seq_rewards)
    stats = t.update(1, ro, adv if adv_estimator == "gae" else adv_grpo, ref, None)
    stats.update(kl_stats)
    if stage:
        from oneshot_rlvr.zero import full_state_dict

        params = full_state_dict(t.model)  # a collective: every rank gathers
    else:
        params = {k: v.detach().clone() for k, v in t.model.state_dict().items()}
    if rank == 0:
        torch.save({"params": params, "stats": stats, "micro_batches": counts, "critic": critic}, out)


if __name__ == "__main__":
    main()
