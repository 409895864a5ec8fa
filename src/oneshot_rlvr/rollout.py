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

GPU paths (CUDA only, written against the vLLM / transformers docs, NOT yet measured on a GPU):
- vLLM colocated with the trainer: `enable_sleep_mode=True`; after generation `sleep(level)` frees the
  KV cache (and offloads or drops the weights) for the log-prob and update phases; `sync_weights`
  then wakes the weights only, loads the new ones, wakes the KV cache and resets the prefix cache,
  so the weights and a full KV cache never coexist with the trainer's activations.
- `hf` engine: a static KV cache with CUDA-graph decoding (src/oneshot_rlvr/fastgen.py) on CUDA for
  the samplers it supports (Qwen2 family, temperature or greedy, top_p 1, top_k off: the rollout
  setting); anything else goes through transformers `generate`. On CPU it stays off by default
  (`static_cache="auto"`); `on` runs the same decoder eagerly (what the tests compare).
"""

from __future__ import annotations

import contextlib
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
    min_tokens: int = 0  # EOS suppressed before this many tokens (benchmarks force response lengths)
    detokenize: bool = True  # vLLM: also return the text (the trainer reads token ids only: off, as verl)


@dataclass
class Completion:
    token_ids: list[int]
    text: str
    finish_reason: str  # "stop" (EOS / stop token / stop string) or "length"
    logprobs: list[float] | None = None


def _cut_at_stop_strings(tokenizer, ids: list[int], stops: list[str]) -> tuple[list[int], str, bool]:
    """Truncate at the first stop string as vLLM does: token ids keep the token that completed the stop
    string, the text ends before it."""
    text = tokenizer.decode(ids, skip_special_tokens=True)
    stops = [s for s in stops if s]
    if not any(s in text for s in stops):
        return ids, text, False
    for k in range(1, len(ids) + 1):
        prefix = tokenizer.decode(ids[:k], skip_special_tokens=True)
        hits = [prefix.find(s) for s in stops if s in prefix]
        if hits:
            return ids[:k], prefix[: min(hits)], True
    return ids, text, False


@contextlib.contextmanager
def _sampling_only_generation_config(model):
    """Hide the checkpoint's generation_config from `generate` (transformers fills every unset field from it): a
    shipped repetition_penalty, no_repeat_ngram_size, min_p, bad_words_ids ... would sample from another
    distribution than softmax(logits / T) with top-p / top-k, which the trainer's log-probs and vLLM's
    SamplingParams (as the official code builds them) assume."""
    from transformers import GenerationConfig

    saved = model.generation_config
    model.generation_config = GenerationConfig(bos_token_id=saved.bos_token_id, eos_token_id=saved.eos_token_id,
                                               pad_token_id=saved.pad_token_id)
    try:
        yield
    finally:
        model.generation_config = saved


class HFEngine:
    """transformers `generate` on the trainer's own module (always in sync; no weight push needed)."""

    name = "hf"

    def __init__(self, model, tokenizer, eos_token_ids: list[int] | None = None, batch_size: int = 256,
                 static_cache: str = "auto", compile: bool = False):
        self.model, self.tokenizer = model, tokenizer
        self.compile = compile
        eos = eos_token_ids if eos_token_ids is not None else _model_eos_ids(model, tokenizer)
        self.eos_ids = list(dict.fromkeys(eos))
        self.batch_size = batch_size
        if static_cache not in ("auto", "on", "off"):
            raise ValueError(f"static_cache must be auto, on or off, got {static_cache!r}")
        self.static_cache = static_cache
        self._decoder = None  # fastgen.StaticDecoder, built on first use

    def _use_static_cache(self, device) -> bool:
        # a static cache has fixed shapes, so transformers torch.compile's the decoding step on CUDA; on CPU
        # it would only pre-allocate, and compile there costs more than it saves for short test runs
        return self.static_cache == "on" or (self.static_cache == "auto" and device.type == "cuda")

    def generate(self, prompt_ids: list[list[int]], sampling: SamplingConfig) -> list[list[Completion]]:
        import torch

        from oneshot_rlvr import fastgen

        model, tok = self.model, self.tokenizer
        device = next(model.parameters()).device
        pad = tok.pad_token_id if tok.pad_token_id is not None else self.eos_ids[0]
        eos = list(dict.fromkeys(self.eos_ids + list(sampling.stop_token_ids)))
        greedy = sampling.temperature == 0
        # expand each prompt n times (row-major: prompt i sample j at i*n + j)
        flat = [p for p in prompt_ids for _ in range(sampling.n)]
        results: list[Completion] = []
        was_training = model.training
        model.eval()
        if sampling.seed is not None:
            torch.manual_seed(sampling.seed)
        fast = self._use_static_cache(device) and fastgen.supports(model, sampling)
        if fast:
            if self._decoder is None:
                self._decoder = fastgen.StaticDecoder(model, compile=self.compile)
            else:
                self._decoder.refresh(model)  # the policy changed since the last rollout
        try:
            for start in range(0, len(flat), self.batch_size):
                if fast:
                    chunk = flat[start:start + self.batch_size]
                    toks, lps = self._decoder.generate(chunk, sampling.max_tokens, sampling.temperature, eos,
                                                       sampling.min_tokens)
                    for ids, lp in zip(toks, lps):
                        finish = "stop" if ids and ids[-1] in eos else "length"
                        ids_cut, text, hit = _cut_at_stop_strings(tok, ids, sampling.stop)
                        if hit:
                            ids, finish, lp = ids_cut, "stop", lp[: len(ids_cut)]
                        results.append(Completion(token_ids=ids, text=text, finish_reason=finish,
                                                  logprobs=lp if sampling.logprobs else None))
                    continue
                chunk = flat[start:start + self.batch_size]
                width = max(len(p) for p in chunk)
                input_ids = torch.full((len(chunk), width), pad, dtype=torch.long)
                attn = torch.zeros((len(chunk), width), dtype=torch.long)
                for r, p in enumerate(chunk):  # left padding
                    input_ids[r, width - len(p):] = torch.tensor(p)
                    attn[r, width - len(p):] = 1
                kwargs = dict(max_new_tokens=sampling.max_tokens, eos_token_id=eos, pad_token_id=pad,
                              do_sample=not greedy, output_scores=sampling.logprobs,
                              return_dict_in_generate=True)
                if sampling.min_tokens:
                    kwargs["min_new_tokens"] = sampling.min_tokens
                if self._use_static_cache(device):
                    kwargs["cache_implementation"] = "static"
                if not greedy:
                    kwargs.update(temperature=sampling.temperature, top_p=sampling.top_p,
                                  top_k=sampling.top_k if sampling.top_k and sampling.top_k > 0 else 0)
                else:
                    kwargs.update(temperature=None, top_p=None, top_k=None)
                with torch.no_grad(), _sampling_only_generation_config(model):
                    out = model.generate(input_ids=input_ids.to(device), attention_mask=attn.to(device), **kwargs)
                seqs = out.sequences[:, width:].tolist()
                for r, ids in enumerate(seqs):
                    finish = "length"
                    for k, t in enumerate(ids):
                        if t in eos:
                            ids, finish = ids[: k + 1], "stop"
                            break
                    lps = None
                    if sampling.logprobs:
                        lps = [torch.log_softmax(out.scores[k][r].float(), -1)[t].item() for k, t in enumerate(ids)]
                    text_ids = ids
                    ids_cut, text, hit = _cut_at_stop_strings(tok, text_ids, sampling.stop)
                    if hit:
                        ids, finish = ids_cut, "stop"
                        lps = lps[: len(ids)] if lps is not None else None
                    results.append(Completion(token_ids=ids, text=text, finish_reason=finish, logprobs=lps))
        finally:
            model.train(was_training)
        n = sampling.n
        return [results[i * n:(i + 1) * n] for i in range(len(prompt_ids))]

    def sync_weights(self, model) -> None:  # generates with the live module
        self.model = model

    def sleep(self) -> None:
        """Free the decoder's KV cache and graphs for the log-prob and update phases (recaptured at the
        next rollout: about a second on a GPU, against tens of GB the update may need)."""
        if self._decoder is not None:
            self._decoder.release()

    def wake(self) -> None:
        pass


def _model_eos_ids(model_or_config, tokenizer) -> list[int]:
    cfg = getattr(model_or_config, "generation_config", None) or getattr(model_or_config, "config", None)
    ids: list[int] = []
    for src in (cfg, getattr(model_or_config, "config", None)):
        e = getattr(src, "eos_token_id", None) if src is not None else None
        if e is not None:
            ids += e if isinstance(e, list) else [e]
    if tokenizer.eos_token_id is not None:
        ids.append(tokenizer.eos_token_id)
    return list(dict.fromkeys(ids))


class VLLMEngine:
    """In-process vLLM (V1 engine, `VLLM_ENABLE_V1_MULTIPROCESSING=0`, uni executor) for rollouts and evaluation.

    Weight sync is `model_runner.reload_weights(weights_iterator=...)` followed by the tied-embedding fix:
    with `tie_word_embeddings` vLLM's reload leaves `lm_head` on the old weights (silently), so we point it
    at the new embedding and re-run its post-load processing; then the prefix cache is reset.
    """

    name = "vllm"

    def __init__(self, model_path: str, dtype: str = "float32", seed: int = 0, max_model_len: int = 4096,
                 gpu_memory_utilization: float = 0.7, max_num_seqs: int = 256, enforce_eager: bool | None = None,
                 sleep: bool = True, sleep_level: int = 1):
        import os

        import torch

        os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
        from vllm import LLM

        cuda = torch.cuda.is_available()
        kwargs = dict(model=model_path, dtype=dtype, seed=seed, max_model_len=max_model_len,
                      logprobs_mode="processed_logprobs", max_num_seqs=max_num_seqs,
                      gpu_memory_utilization=gpu_memory_utilization,
                      enforce_eager=(not cuda) if enforce_eager is None else enforce_eager)
        # sleep mode raises at init on CPU ("not supported on current platform"): CUDA only
        self.sleep_enabled = bool(cuda and sleep)
        if sleep_level not in (1, 2):
            raise ValueError(f"sleep_level must be 1 or 2, got {sleep_level!r}")
        self.sleep_level = sleep_level
        if self.sleep_enabled:
            kwargs["enable_sleep_mode"] = True
        if not cuda:
            kwargs["distributed_executor_backend"] = "uni"
            # a chunked prefill discards its sampled token and rewinds the request's seeded generator by an
            # offset, which CPU generators lack: every seeded request crashed once a step's prompts exceeded the
            # token budget (vLLM 0.32). Whole prompts per step avoid the rewind; CUDA keeps chunking
            kwargs["enable_chunked_prefill"] = False
            # on CPU vLLM sizes its KV cache as this fraction of the node's memory (unless VLLM_CPU_KVCACHE_SPACE
            # is set): torchrun's ranks share one node, so each takes its share (2 ranks at 0.7 were OOM-killed)
            kwargs["gpu_memory_utilization"] = gpu_memory_utilization / int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
        elif int(os.environ.get("WORLD_SIZE", "1")) > 1:
            # one vLLM replica per torchrun rank (TP=1): vLLM joins the ranks' launcher instead of spawning
            kwargs["distributed_executor_backend"] = "external_launcher"
        self.llm = LLM(**kwargs)
        self.tokenizer = self.llm.get_tokenizer()
        self._sleeping = False

    def _model_runner(self):
        executor = self.llm.llm_engine.model_executor
        worker = executor.driver_worker
        worker = getattr(worker, "worker", worker)
        return worker.model_runner

    def generate(self, prompt_ids: list[list[int]], sampling: SamplingConfig) -> list[list[Completion]]:
        from vllm import SamplingParams
        from vllm.inputs import TokensPrompt

        params = []
        for i in range(len(prompt_ids)):
            # a distinct, reproducible seed per request: identical prompts (1-shot) must not get identical samples.
            # vLLM seeds a request's n samples seed, seed + 1, ..., seed + n - 1 (parallel_sampling): requests
            # are spaced by n, or request i's sample j would repeat request i+1's sample j-1
            seed = None if sampling.seed is None else sampling.seed * 1_000_003 + i * sampling.n
            params.append(SamplingParams(
                n=sampling.n, temperature=sampling.temperature, top_p=sampling.top_p,
                top_k=sampling.top_k if sampling.top_k and sampling.top_k > 0 else 0,
                max_tokens=sampling.max_tokens, min_tokens=sampling.min_tokens, seed=seed,
                stop=list(sampling.stop) or None,
                stop_token_ids=list(sampling.stop_token_ids) or None,
                logprobs=0 if sampling.logprobs else None,
                detokenize=sampling.detokenize or bool(sampling.stop)))  # stop strings need the text
        outs = self.llm.generate([TokensPrompt(prompt_token_ids=list(p)) for p in prompt_ids], params, use_tqdm=False)
        result = []
        for o in outs:
            comps = []
            for c in o.outputs:
                lps = None
                if sampling.logprobs and c.logprobs is not None:
                    lps = [d[t].logprob for t, d in zip(c.token_ids, c.logprobs)]
                comps.append(Completion(token_ids=list(c.token_ids), text=c.text,
                                        finish_reason="length" if c.finish_reason == "length" else "stop",
                                        logprobs=lps))
            result.append(comps)
        return result

    def sync_weights(self, model) -> None:
        """Load `model`'s weights; when asleep: wake weights → load → wake KV cache → reset prefix cache."""
        import torch

        state = {k: v.detach() for k, v in model.state_dict().items()}
        asleep = self._sleeping
        if asleep:  # weights first: the KV cache is allocated only after the new weights are in place
            self.llm.wake_up(tags=["weights"])
        runner = self._model_runner()
        with torch.no_grad():
            runner.reload_weights(weights_iterator=iter(list(state.items())))
            vmodel = runner.get_model() if hasattr(runner, "get_model") else runner.model
            if getattr(model.config, "tie_word_embeddings", False) and hasattr(vmodel, "lm_head"):
                head = vmodel.lm_head
                head.weight = vmodel.model.embed_tokens.weight
                qm = getattr(head, "quant_method", None)
                if qm is not None and hasattr(qm, "process_weights_after_loading"):
                    qm.process_weights_after_loading(head)
        del state
        if asleep:
            if torch.cuda.is_available():
                torch.cuda.empty_cache()  # the trainer's freed blocks go back before the KV cache is allocated
            if not self.llm.wake_up(tags=["kv_cache"]):
                self.llm.wake_up()  # something else still asleep: vLLM schedules again only when all is resident
            self._sleeping = False
        self.llm.reset_prefix_cache()

    def sleep(self) -> None:
        """Free the GPU memory vLLM holds (level 1: weights to CPU RAM; level 2: weights dropped, they are
        re-pushed by `sync_weights` anyway). No-op without sleep mode (CPU)."""
        if self.sleep_enabled and not self._sleeping:
            self.llm.sleep(level=self.sleep_level)
            self._sleeping = True

    def wake(self) -> None:
        if self._sleeping:
            self.llm.wake_up()
            self._sleeping = False


def make_engine(kind: str, model_path: str, *, model=None, tokenizer=None, dtype: str = "float32", seed: int = 0,
                max_model_len: int = 4096, gpu_memory_utilization: float = 0.7, max_num_seqs: int = 256,
                static_cache: str = "auto", sleep: bool = True, sleep_level: int = 1, compile: bool = False):
    """Build a rollout engine. `hf` needs the torch `model` (and tokenizer) or loads them from `model_path`."""
    if kind == "hf":
        if model is None or tokenizer is None:
            from oneshot_rlvr.modeling import load_model, load_tokenizer, resolve_device, resolve_dtype

            device = resolve_device("auto")
            tokenizer = tokenizer or load_tokenizer(model_path)
            model = model or load_model(model_path, resolve_dtype(dtype, device), device)
        return HFEngine(model, tokenizer, static_cache=static_cache, compile=compile)
    if kind == "vllm":
        return VLLMEngine(model_path, dtype=dtype, seed=seed, max_model_len=max_model_len,
                          gpu_memory_utilization=gpu_memory_utilization, max_num_seqs=max_num_seqs,
                          sleep=sleep, sleep_level=sleep_level)
    raise ValueError(f"unknown engine {kind!r}; expected hf or vllm")
