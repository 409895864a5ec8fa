"""Run configuration for `rlvr train`: one flat dataclass whose defaults are the paper's pi_1 run.

Every hyper-parameter of official-repo.md §2.1 is a key here; docs/hyperparameters.md maps each
key to its source in the paper or the authors' code. Unknown keys and wrong types fail at load
with a message naming the key, before anything is written.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, get_args, get_origin, get_type_hints

import yaml

from oneshot_rlvr.errors import ConfigError
from oneshot_rlvr.fileio import not_utf8_message


PACKED_ATTENTION = ("auto", "sdpa", "varlen")  # the `packed_attention` key (oneshot_rlvr.packing.resolve_kernel)
CHOICES = {  # RunConfig keys with a closed set of values (bench/grpo_step.py offers the same)
    "engine": ("vllm", "hf"),
    "reward": ("outcome", "format"),
    "grader": ("deepscaler", "math_verify", "qwen", "deepscaler_think"),
    "kl_type": ("kl", "abs", "mse", "low_var_kl"),
    "kl_in_reward_type": ("kl", "abs", "mse", "low_var_kl"),
    "kl_ctrl": ("fixed", "adaptive"),
    "agg": ("verl02", "token-mean", "seq-mean-token-mean", "seq-mean-token-sum"),
    "adv_estimator": ("grpo", "gae"),
    "dtype": ("auto", "float32", "bfloat16"),
    "precision": ("autocast", "bf16-params"),
    "device": ("auto", "cpu", "cuda"),
    "save_dtype": ("float32", "bfloat16"),
    "keep_checkpoints": ("all", "evaluated-best", "none-after-eval"),
    "zero_stage": (2, 3),
    "vllm_sleep_level": (1, 2),
    "hf_static_cache": ("auto", "on", "off"),
    "packed_attention": PACKED_ATTENTION,
    "lr_schedule": ("verl02", "hf"),
}


@dataclass
class RunConfig:
    # --- model & data ---------------------------------------------------------------------
    model: str = "Qwen/Qwen2.5-Math-1.5B"  # hub id or local dir
    tokenizer: str | None = None  # defaults to `model`
    train_file: str = "resources/train/one_shot/pi1_r128.jsonl"  # verl-format JSONL (prompt, reward_model, extra_info)
    prompt_key: str = "prompt"
    train_batch_size: int = 128  # prompts per step (rows of the train file)
    n: int = 8  # responses per prompt (GRPO group size)
    max_prompt_length: int = 1024  # longer prompts are dropped and counted (verl filter_overlong_prompts)
    max_response_length: int = 3072
    shuffle: bool = True
    drop_last: bool = True
    seed: int = 1
    # --- rollout --------------------------------------------------------------------------
    engine: str = "vllm"  # vllm | hf
    temperature: float = 0.6
    top_p: float = 1.0
    top_k: int = -1
    gpu_memory_utilization: float = 0.7
    max_num_seqs: int = 256
    vllm_sleep: bool = True  # CUDA only: free vLLM's GPU memory during log-probs/update (ignored on CPU)
    vllm_sleep_level: int = 1  # 1: weights offloaded to CPU RAM | 2: weights discarded (they are re-pushed anyway)
    hf_static_cache: str = "auto"  # hf engine: static-KV-cache decoder (CUDA graphs on CUDA); auto = on CUDA only
    hf_compile: bool = False  # hf engine's static decoder: torch.compile its layer for decode steps (speed only)
    # --- reward ---------------------------------------------------------------------------
    reward: str = "outcome"  # outcome | format
    grader: str = "deepscaler"  # deepscaler (paper) | math_verify (stricter)
    grade_prompt_and_response: bool = True  # paper: decodes prompt+response and takes the last \boxed{}
    grader_timeout: float = 5.0
    grader_workers: int | None = None
    label_override: str | None = None  # Table 5 rows 11-13: replace every ground truth by this label
    # --- algorithm ------------------------------------------------------------------------
    adv_estimator: str = "grpo"
    norm_adv_by_std: bool = True
    adv_eps: float = 1e-6
    pg_coef: float = 1.0  # the fork's pg_loss_coeff
    kl_coef: float = 0.001  # kl_loss_coef (a loss term, use_kl_loss=True)
    kl_type: str = "low_var_kl"
    # verl's in-reward KL (algorithm.kl_ctrl / kl_penalty): token rewards −= beta·KL(old policy ‖ reference)
    # before the advantages. The fork applies it whenever use_kl_loss is off, with kl_ctrl.kl_coef 0.001 unless
    # the script zeroes it; our KL-off rows read the scripts as zeroing it (official-repo.md E12 [inferred]),
    # so 0 = off is the default. Any value > 0 turns it on (with or without the KL loss term above)
    kl_in_reward_coef: float = 0.0  # beta (the initial beta under kl_ctrl: adaptive)
    kl_in_reward_type: str = "kl"  # algorithm.kl_penalty: kl (log-ratio) | abs | mse | low_var_kl
    kl_ctrl: str = "fixed"  # fixed | adaptive (beta follows kl_target over kl_horizon sequences)
    kl_target: float = 0.1
    kl_horizon: int = 10000
    entropy_coef: float = 0.001  # loss -= entropy_coef * H  (maximises entropy; paper alpha = -0.001)
    clip_low: float = 0.2
    clip_high: float = 0.2
    agg: str = "verl02"  # verl02 (paper: token-mean per micro-batch, seq-count weighted) | token-mean (global)
    # agg verl02 with packed micro-batches: the data-parallel size whose micro-batch membership is reproduced
    # (paper: 8 GPUs). A rank's sequences are first split into verl02_dp_size / world_size equal-count
    # balanced sets (verl's _balance_batch), then each set into its own token-budget micro-batches. null =
    # the real world size (no emulation)
    verl02_dp_size: int | None = 8
    ppo_epochs: int = 1
    # one epoch of one mini-batch is on-policy: false = the ratio is exactly 1 (the update detaches its own
    # log-probs; no extra pass) | true = the fork's separate no-grad old-log-prob pass (ratio 1 up to rounding,
    # which bf16 makes ~1e-3; one more forward per step). Same gradient in exact arithmetic
    recompute_old_logprobs: bool = False
    # --- PPO critic (adv_estimator: gae; the fork's yaml defaults, see critic.py) -----------------
    gamma: float = 1.0
    lam: float = 1.0
    critic_model: str | None = None  # defaults to `model` (a new one-output value head on it)
    critic_lr: float = 1e-5
    critic_weight_decay: float = 0.01
    critic_warmup: int = 0  # the actor is updated from this step on (the critic from step 1)
    cliprange_value: float = 0.5
    # sequences per critic optimizer step: the fork's critic ppo_mini_batch_size (128) is not multiplied by n,
    # so 1,024 sequences give 8 critic steps per rollout step; null = the actor's mini-batch (later verl)
    critic_mini_batch_seqs: int | None = 128
    critic_micro_batch_tokens: int = 32768  # the critic's ppo_max_token_len_per_gpu
    ppo_mini_batch_size: int | None = None  # prompts; None = the whole batch = one optimizer step per rollout step (paper)
    # --- optimiser ------------------------------------------------------------------------
    lr: float = 1e-6
    lr_warmup_steps: int = 0  # constant schedule after warm-up
    # verl02: the fork's get_constant_schedule_with_warmup, factor min(1, s / max(1, warmup)) at update
    # s = 0, 1, ... (one per rollout step, as the fork steps it per update_actor call): the FIRST update has lr 0 even without warm-up (AdamW's moments still take its gradient) |
    # hf: transformers' schedule, the full lr from the first step when lr_warmup_steps is 0
    lr_schedule: str = "verl02"
    weight_decay: float = 0.01
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    adam_eps: float = 1e-8
    grad_clip: float = 1.0
    # --- compute --------------------------------------------------------------------------
    micro_batch_tokens: int = 24000  # token budget per micro-batch (ppo_max_token_len_per_gpu)
    # micro-batches as verl's use_remove_padding + use_dynamic_bsz (the paper): ceil(tokens / budget) sets of whole
    # sequences balanced by token count, each packed into one row without padding; false = consecutive padded batches
    sequence_packing: bool = True
    # attention within a packed row: sdpa = one SDPA call per sequence (any device) | varlen = one flash-attention
    # call per row (torch varlen_attn: CUDA, bf16) | auto = varlen where it runs and passes a self-check, else sdpa
    packed_attention: str = "auto"
    logprob_chunk_tokens: int = 2048  # rows of logits materialised at once for log-prob/entropy
    gradient_checkpointing: bool = True
    torch_compile: bool = False  # torch.compile each decoder layer + the log-prob head (speed only; off = the paper)
    dtype: str = "auto"  # auto = bf16 on CUDA, fp32 on CPU; or float32 | bfloat16
    # how bf16 compute meets fp32 master weights: autocast over fp32 parameters | bf16-params (a bf16
    # module, fp32 masters in the optimizer: verl FSDP's mixed precision); nothing to do when dtype is fp32
    precision: str = "bf16-params"
    device: str = "auto"  # auto | cpu | cuda
    deepspeed: bool = False
    zero_stage: int = 2
    # --- schedule & outputs ---------------------------------------------------------------
    total_steps: int = 2000
    save_freq: int = 20
    save_step0: bool = True
    save_dtype: str = "float32"  # float32 (as verl) | bfloat16
    # state/ (weights + optimizer, what a resume loads) is written at every save either way; false deletes it
    # once the run is done (done.json): saves disk, but the finished run can then not be extended
    save_optimizer: bool = True
    keep_checkpoints: str = "all"  # all | evaluated-best | none-after-eval
    tensorboard: bool = True
    progress: bool = True

    # ---------------------------------------------------------------------------------------
    def validate(self) -> "RunConfig":
        for key, allowed in CHOICES.items():
            if getattr(self, key) not in allowed:
                raise ConfigError(f"config key '{key}': {getattr(self, key)!r} is not one of {list(allowed)}")
        positive = ["train_batch_size", "n", "max_prompt_length", "max_response_length", "total_steps",
                    "save_freq", "ppo_epochs", "micro_batch_tokens", "logprob_chunk_tokens", "max_num_seqs",
                    "critic_micro_batch_tokens"]
        for key in positive:
            if getattr(self, key) <= 0:
                raise ConfigError(f"config key '{key}' must be > 0, got {getattr(self, key)}")
        # every float key is checked for finiteness: a NaN passes any `<` test and surfaces steps later
        for key in ["temperature", "lr", "weight_decay", "grad_clip", "kl_coef", "entropy_coef", "clip_low",
                    "clip_high", "pg_coef", "critic_lr", "critic_weight_decay", "kl_in_reward_coef"]:
            v = getattr(self, key)
            if not math.isfinite(v) or v < 0:
                raise ConfigError(f"config key '{key}' must be a finite number >= 0, got {v}")
        # > 0: adv_eps and adam_eps are denominators' guards (0 gives 0/0 = NaN for a group of equal scores);
        # grad_clip 0 would scale every gradient to zero; a grader timeout of 0 fails every answer
        for key in ["temperature", "grad_clip", "adv_eps", "adam_eps", "grader_timeout", "cliprange_value"]:
            v = getattr(self, key)
            if not (math.isfinite(v) and v > 0):
                raise ConfigError(f"config key '{key}' must be a finite number > 0, got {v}")
        for key in ["top_p", "gpu_memory_utilization"]:
            if not (0 < getattr(self, key) <= 1):
                raise ConfigError(f"config key '{key}' must be in (0, 1], got {getattr(self, key)}")
        if self.top_k < -1:
            raise ConfigError(f"config key 'top_k' must be -1 (off) or >= 0, got {self.top_k}")
        # the rollout seeds (seed·100003 + step)·1000003 + request must fit torch's 64-bit generator seed
        if not (0 <= self.seed < 2 ** 27):
            raise ConfigError(f"config key 'seed' must be in [0, 2**27), got {self.seed}")
        if self.engine == "hf" and self.hf_static_cache == "on" and self.deepspeed and self.zero_stage == 3:
            raise ConfigError("config key 'hf_static_cache': on cannot read ZeRO-3's partitioned weights "
                              "(deepspeed with zero_stage: 3); use auto or off, or zero_stage: 2")
        if self.verl02_dp_size is not None and self.verl02_dp_size < 1:
            raise ConfigError(f"config key 'verl02_dp_size' must be >= 1 or null, got {self.verl02_dp_size}")
        for key in ["gamma", "lam"]:
            if not (0 <= getattr(self, key) <= 1):
                raise ConfigError(f"config key '{key}' must be in [0, 1], got {getattr(self, key)}")
        if self.kl_ctrl == "adaptive":
            if not self.kl_in_reward_coef > 0:
                raise ConfigError("config key 'kl_ctrl': adaptive scales kl_in_reward_coef, which is 0 (in-reward KL "
                                  "off); set kl_in_reward_coef > 0 (the initial beta) or use kl_ctrl: fixed")
            if not (math.isfinite(self.kl_target) and self.kl_target > 0):
                raise ConfigError(f"config key 'kl_target' must be a finite number > 0, got {self.kl_target}")
            if self.kl_horizon <= 0:
                raise ConfigError(f"config key 'kl_horizon' must be > 0, got {self.kl_horizon}")
        if self.critic_warmup < 0:
            raise ConfigError(f"config key 'critic_warmup' must be >= 0, got {self.critic_warmup}")
        if self.adv_estimator == "gae" and self.critic_mini_batch_seqs is not None and (
                self.critic_mini_batch_seqs <= 0 or (self.train_batch_size * self.n) % self.critic_mini_batch_seqs):
            raise ConfigError(f"config key 'critic_mini_batch_seqs': {self.critic_mini_batch_seqs} must be > 0 and divide "
                              f"the {self.train_batch_size * self.n} sequences of a step (train_batch_size × n), or be null")
        if self.lr_warmup_steps < 0:
            raise ConfigError(f"config key 'lr_warmup_steps' must be >= 0, got {self.lr_warmup_steps}")
        if self.grader_workers is not None and self.grader_workers < 1:
            raise ConfigError(f"config key 'grader_workers' must be >= 1 (or null = automatic), got {self.grader_workers}")
        if self.label_override is not None and not self.label_override.strip():
            raise ConfigError("config key 'label_override' must be a non-empty label or null")
        if self.ppo_mini_batch_size is not None and (
                self.ppo_mini_batch_size <= 0 or self.train_batch_size % self.ppo_mini_batch_size):
            raise ConfigError("config key 'ppo_mini_batch_size' must be > 0 and divide 'train_batch_size'")
        if self.packed_attention == "varlen" and not self.sequence_packing:
            raise ConfigError("config key 'packed_attention': varlen attends within packed rows; it needs "
                              "sequence_packing: true (or leave packed_attention at auto)")
        if len(self.betas) != 2:
            raise ConfigError("config key 'betas' must be a list of two numbers")
        for i, b in enumerate(self.betas):  # torch AdamW's own range, checked before anything is written
            if not (math.isfinite(b) and 0 <= b < 1):
                raise ConfigError(f"config key 'betas[{i}]' must be in [0, 1), got {b}")
        return self

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @property
    def mini_batch_prompts(self) -> int:
        return self.ppo_mini_batch_size or self.train_batch_size

    @property
    def critic_mini_batch(self) -> int:
        """Sequences per critic optimizer step (all ranks together)."""
        return self.critic_mini_batch_seqs or self.mini_batch_prompts * self.n

    @property
    def tokenizer_path(self) -> str:
        return self.tokenizer or self.model


# Keys that may differ between the config a run's saved state was trained with and the config that
# resumes it: they change speed, memory, float rounding, logging or what is kept on disk, never the
# trajectory's math, data or random draws. Every other key must match (a resumed run is ONE run:
# config.yaml, metrics and checkpoints describe it as a whole). total_steps is checked apart: it may
# grow (to extend a run) or shrink, never below the step already trained.
RESUME_MAY_DIFFER = frozenset({
    "total_steps", "progress", "tensorboard", "save_freq", "save_step0", "keep_checkpoints", "save_optimizer",
    "grader_workers", "gpu_memory_utilization", "max_num_seqs", "vllm_sleep", "vllm_sleep_level", "hf_compile",
    "torch_compile", "packed_attention", "gradient_checkpointing", "logprob_chunk_tokens",
})
# the micro-batch partition sets `agg: verl02`'s normalisation (token mean per micro-batch); the other
# aggregations are invariant to it, so only then may these change
MICRO_BATCH_KEYS = frozenset({"micro_batch_tokens", "sequence_packing", "verl02_dp_size", "critic_micro_batch_tokens"})


def resume_conflicts(old: dict[str, Any], new: RunConfig) -> list[tuple[str, Any, Any]]:
    """(key, old value, new value) for each key that must match on resume but differs, in field order.

    `old` is a saved config dict; a key it lacks (added to RunConfig since) counts as its default, which
    is the behaviour the run had; keys RunConfig no longer has are ignored."""
    free = RESUME_MAY_DIFFER | (MICRO_BATCH_KEYS if new.agg != "verl02" else frozenset())
    defaults = RunConfig().to_dict()
    out = []
    for f in fields(RunConfig):
        if f.name in free:
            continue
        was, now = old.get(f.name, defaults[f.name]), getattr(new, f.name)
        if isinstance(was, tuple):
            was = list(was)
        if was != now:
            out.append((f.name, was, now))
    return out


def _check_type(key: str, value: Any, hint: Any) -> Any:
    """Coerce YAML scalars to the field's type, or raise naming the key."""
    origin, args = get_origin(hint), get_args(hint)
    if value is None:
        if type(None) in args:
            return None
        raise ConfigError(f"config key '{key}' may not be null")
    if args and type(None) in args:  # Optional[X]
        hint = next(a for a in args if a is not type(None))
        origin, args = get_origin(hint), get_args(hint)
    if hint is bool:
        if isinstance(value, bool):
            return value
    elif hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif hint is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):  # YAML 1.1 reads "1e-6" as a string
            try:
                return float(value)
            except ValueError:
                pass
    elif hint is str:
        if isinstance(value, str):
            return value
    elif origin is list:
        if isinstance(value, list):
            return [_check_type(f"{key}[{i}]", v, args[0]) for i, v in enumerate(value)]
    else:
        return value
    raise ConfigError(f"config key '{key}': expected {getattr(hint, '__name__', hint)}, got {value!r}")


def from_dict(data: dict[str, Any], source: str = "config") -> RunConfig:
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected a mapping of config keys, got {type(data).__name__}")
    hints = get_type_hints(RunConfig)
    known = {f.name for f in fields(RunConfig)}
    for k in data:  # YAML allows `1: x` or `null: x`; difflib below would raise a bare TypeError
        if not isinstance(k, str):
            raise ConfigError(f"{source}: config keys must be names, got the key {k!r}")
    unknown = sorted(set(data) - known)
    if unknown:
        import difflib

        hint = difflib.get_close_matches(unknown[0], known, n=1)
        extra = f" (did you mean '{hint[0]}'?)" if hint else ""
        raise ConfigError(f"{source}: unknown config key '{unknown[0]}'{extra}")
    kwargs = {k: _check_type(k, v, hints[k]) for k, v in data.items()}
    return RunConfig(**kwargs).validate()


def parse_overrides(items: list[str]) -> dict[str, Any]:
    """`key=value` strings (values parsed as YAML) from `--set` on the command line."""
    out: dict[str, Any] = {}
    for item in items or []:
        if "=" not in item:
            raise ConfigError(f"--set expects key=value, got {item!r}")
        k, v = item.split("=", 1)
        try:
            out[k.strip()] = yaml.safe_load(v)
        except yaml.YAMLError as exc:
            problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
            raise ConfigError(f"--set {k.strip()}: value {v!r} is not valid YAML ({problem})") from None
    return out


def load_run_config(path: str | Path | None, overrides: dict[str, Any] | None = None) -> RunConfig:
    data: dict[str, Any] = {}
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise ConfigError(f"config file not found: {p}")
        try:
            raw = p.read_bytes()
            data = yaml.safe_load(raw.decode("utf-8")) or {}
        except UnicodeDecodeError as exc:
            raise ConfigError(not_utf8_message(p, raw, exc, "run config (YAML)")) from None
        except OSError as exc:
            raise ConfigError(f"cannot read config file {p}: {exc.strerror or exc}") from None
        except yaml.YAMLError as exc:
            raise ConfigError(f"{p}: not valid YAML: {exc}") from None
        if not isinstance(data, dict):
            raise ConfigError(f"{p}: expected a mapping of config keys")
    data = {**data, **(overrides or {})}
    return from_dict(data, source=str(path) if path else "config")
