"""Rollout engines behind one interface: `hf` (transformers generate) and `vllm` (in-process vLLM).

Both take prompt token ids and return token ids, so nothing is re-tokenised between rollout,
reward and training. The `vllm` engine receives the trainer's weights every step through
`reload_weights` plus the tied-embedding fix (see docs/cpu-stack notes); the `hf` engine
generates with the trainer's own module, so it is always in sync.

Contract used by the trainer and the evaluation harness:

    engine = make_engine("hf" | "vllm", model_path, dtype="float32", seed=0, max_model_len=4096, ...)
    outs = engine.generate(prompt_ids, SamplingConfig(n=8, temperature=0.6, max_tokens=3072, ...))
    # outs[i][j] is a Completion for prompt i, sample j (j < n)
    engine.sync_weights(model)   # push a torch module's weights (no-op for hf bound to that module)
    engine.sleep(); engine.wake()  # vLLM sleep mode on CUDA; no-ops elsewhere
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class SamplingConfig:
    n: int = 1
    temperature: float = 0.6  # 0 = greedy
    top_p: float = 1.0
    top_k: int = -1
    max_tokens: int = 3072
    seed: int | None = None
    stop: list[str] = field(default_factory=list)  # stop strings (excluded from the output, as vLLM)
    stop_token_ids: list[int] = field(default_factory=list)  # besides the model's EOS
    logprobs: bool = False  # return the sampled tokens' (temperature-processed) log-probs


@dataclass
class Completion:
    token_ids: list[int]
    text: str
    finish_reason: str  # "stop" (EOS / stop token / stop string) or "length"
    logprobs: list[float] | None = None
