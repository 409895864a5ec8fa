"""Static-KV-cache decoding for the `hf` engine; on CUDA each decode step replays a captured CUDA graph.

Why: plain transformers `generate` on a GPU is launch-bound (tens of ms per decode step for a 1.5B
model whose weights stream in ~1 ms), and transformers' own static cache + torch.compile path still
runs its logits processors and stopping criteria eagerly every step. Here the whole decode step —
the Qwen2 forward for one token, EOS suppression (`min_tokens`), temperature sampling, the done flags
and the output write — is one graph, replayed once per token with no host work in between.

The decoder reads the weights of a transformers Qwen2-family model (`Qwen2ForCausalLM`: q/k/v biases,
GQA, RoPE, RMSNorm, SwiGLU, tied or untied head) into its own buffers in the generation dtype
(`refresh` copies them in place, so captured graphs stay valid across training steps). Everything
else the pipeline sees is unchanged: token ids in, token ids (+ processed log-probs) out, row-major
groups, left-padded prompts with positions counted from each prompt's first token (as `generate`).

Sampling: temperature > 0 draws with the exponential-race form of the Gumbel trick,
argmax(logits / T − log E), E ~ Exp(1), which samples exactly softmax(logits / T) (top_p = 1, top_k
off: the paper's rollout setting); temperature 0 is greedy. Other samplers fall back to `generate`.
On CPU the same code runs eagerly (that is what the tests compare against transformers).
"""

from __future__ import annotations

import warnings

import torch
import torch.nn.functional as F

SUPPORTED = ("qwen2",)
BUCKET = 256  # attention-length granularity of the captured graphs (slots attended per decode step)


def supports(model, sampling) -> bool:
    """Whether this decoder can serve `sampling` for `model` (else the caller uses transformers generate)."""
    cfg = model.config
    return (getattr(cfg, "model_type", None) in SUPPORTED and not getattr(cfg, "use_sliding_window", False)
            and (sampling.top_p is None or sampling.top_p >= 1.0)
            and (sampling.top_k is None or sampling.top_k <= 0))


def sample_tokens(logits: torch.Tensor, temperature: float, noise: torch.Tensor | None):
    """Pure sampling step: (token ids, their processed log-probs) from [B, V] fp32 logits.

    temperature 0: greedy (log-probs of the raw distribution); else one draw from softmax(logits / T)
    using `noise` ~ Exp(1) of the same shape (argmax of logits/T − log E is an exact categorical draw)."""
    if temperature > 0:
        logits = logits / temperature
    logp = torch.log_softmax(logits, dim=-1)
    if temperature > 0:
        tok = torch.argmax(logp - torch.log(noise), dim=-1)
    else:
        tok = torch.argmax(logp, dim=-1)
    return tok, logp.gather(1, tok[:, None]).squeeze(1)


def _rms(x: torch.Tensor, w: torch.Tensor, eps: float) -> torch.Tensor:
    x32 = x.float()
    return w * (x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + eps)).to(w.dtype)


def _rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    rot = torch.cat((-x[..., half:], x[..., :half]), dim=-1)
    return x * cos + rot * sin


def _layer(x, ln1, qkv_w, qkv_b, o_w, ln2, gu_w, down_w, kc, vc, cos, sin, mask, slots, attend: int,
           nh: int, nkv: int, hd: int, eps: float) -> torch.Tensor:
    """One Qwen2 decoder layer on the fp32 residual stream `x` [B, T, H]; writes this layer's K/V at `slots`."""
    B, T, _ = x.shape
    grp = nh // nkv
    h = _rms(x, ln1, eps)
    qkv = F.linear(h, qkv_w, qkv_b)
    q, k, v = qkv.split([nh * hd, nkv * hd, nkv * hd], dim=-1)
    q = _rope(q.view(B, T, nh, hd).transpose(1, 2), cos, sin)
    k = _rope(k.view(B, T, nkv, hd).transpose(1, 2), cos, sin)
    v = v.view(B, T, nkv, hd).transpose(1, 2)
    kc.index_copy_(2, slots, k)
    vc.index_copy_(2, slots, v)
    # GQA without expanding K/V: the g query heads of one KV head become g*T query rows
    qg = q.reshape(B, nkv, grp * T, hd)
    o = F.scaled_dot_product_attention(qg, kc[:, :, :attend], vc[:, :, :attend], attn_mask=mask)
    o = o.reshape(B, nh, T, hd)
    x = x + F.linear(o.transpose(1, 2).reshape(B, T, nh * hd), o_w).float()
    h = _rms(x, ln2, eps)
    gate, up = F.linear(h, gu_w).chunk(2, dim=-1)
    return x + F.linear(F.silu(gate) * up, down_w).float()


class StaticDecoder:
    """Batch decoding with a preallocated KV cache [layers, B, kv_heads, S, head_dim]."""

    def __init__(self, model, dtype: torch.dtype | None = None, bucket: int = BUCKET, compile: bool = False):
        cfg = model.config
        self.bucket = bucket
        if getattr(cfg, "model_type", None) not in SUPPORTED:
            raise ValueError(f"StaticDecoder supports {SUPPORTED}, not {getattr(cfg, 'model_type', None)!r}")
        self.device = next(model.parameters()).device
        self.dtype = dtype or (torch.bfloat16 if self.device.type == "cuda" else torch.float32)
        self.cfg = cfg
        self.nh, self.nkv = cfg.num_attention_heads, cfg.num_key_value_heads
        self.hd = getattr(cfg, "head_dim", None) or cfg.hidden_size // self.nh
        self.eps = cfg.rms_norm_eps
        self.use_graphs = self.device.type == "cuda"
        self._weights: dict | None = None
        self._state: dict | None = None  # static buffers of the current (batch, slots) shape
        self._graphs: dict = {}
        self._pool = None
        # torch.compile of ONE layer, reused by all of them (same code, weights as inputs): fuses the ~40
        # small kernels a decode step launches per layer (norms, rotary, casts, residual adds) — at batch 256
        # those, not the matmuls, are most of a step. Compiled once per attention bucket, then dynamic.
        self._layer_compiled = torch.compile(_layer) if compile else None
        self.refresh(model)

    # -- weights ------------------------------------------------------------------------------
    @torch.no_grad()
    def refresh(self, model) -> None:
        """Copy `model`'s current weights into the decoder's buffers (in place: graphs stay valid)."""
        self.model = model
        inner = model.get_decoder()
        head = model.get_output_embeddings()
        dt = self.dtype

        def buf(key, *tensors):
            src = torch.cat([t.detach().reshape(t.shape[0], -1) if t.dim() > 1 else t.detach() for t in tensors])
            if self._weights is None or key not in self._weights:
                store[key] = src.to(device=self.device, dtype=dt).contiguous()
            else:
                self._weights[key].copy_(src.view_as(self._weights[key]))

        store: dict = {} if self._weights is None else self._weights
        for i, layer in enumerate(inner.layers):
            a, m = layer.self_attn, layer.mlp
            buf(f"{i}.qkv_w", a.q_proj.weight, a.k_proj.weight, a.v_proj.weight)
            buf(f"{i}.qkv_b", a.q_proj.bias, a.k_proj.bias, a.v_proj.bias)
            buf(f"{i}.o_w", a.o_proj.weight)
            buf(f"{i}.gu_w", m.gate_proj.weight, m.up_proj.weight)
            buf(f"{i}.down_w", m.down_proj.weight)
            buf(f"{i}.ln1", layer.input_layernorm.weight)
            buf(f"{i}.ln2", layer.post_attention_layernorm.weight)
        buf("norm", inner.norm.weight)
        buf("embed", inner.embed_tokens.weight)
        if head.weight is not inner.embed_tokens.weight:
            buf("head", head.weight)
        self._weights = store
        self._rotary = inner.rotary_emb
        self.n_layers = len(inner.layers)

    # -- buffers --------------------------------------------------------------------------------
    def _ensure_state(self, batch: int, slots: int, max_new: int, eos: list[int]) -> dict:
        s = self._state
        if s is not None and s["B"] == batch and s["S"] >= slots and s["max_new"] >= max_new and s["eos"] == eos:
            return s
        self._graphs.clear()
        self._pool = None
        self._state = None
        if self.device.type == "cuda":
            torch.cuda.empty_cache()
        dev, dt = self.device, self.dtype
        slots = -(-slots // self.bucket) * self.bucket
        pos = torch.arange(slots, device=dev)[None].float()
        cos, sin = self._rotary(torch.zeros(1, device=dev, dtype=torch.float32), pos)
        s = dict(
            B=batch, S=slots, max_new=max_new, eos=eos,
            k=torch.zeros(self.n_layers, batch, self.nkv, slots, self.hd, device=dev, dtype=dt),
            v=torch.zeros(self.n_layers, batch, self.nkv, slots, self.hd, device=dev, dtype=dt),
            valid=torch.zeros(batch, slots, dtype=torch.bool, device=dev),
            cos=cos[0].to(dt), sin=sin[0].to(dt),
            tok=torch.zeros(batch, dtype=torch.long, device=dev),
            pos=torch.zeros(batch, dtype=torch.long, device=dev),
            slot=torch.zeros(1, dtype=torch.long, device=dev),
            step=torch.zeros(1, dtype=torch.long, device=dev),
            min_tokens=torch.zeros(1, dtype=torch.long, device=dev),
            done=torch.zeros(batch, dtype=torch.bool, device=dev),
            out=torch.zeros(batch, max_new, dtype=torch.long, device=dev),
            out_lp=torch.zeros(batch, max_new, dtype=torch.float32, device=dev),
            eos_ids=torch.tensor(eos, dtype=torch.long, device=dev),
            arange=torch.arange(slots, device=dev),
        )
        self._state = s
        return s

    # -- the model ------------------------------------------------------------------------------
    def _forward(self, s: dict, tokens: torch.Tensor, pos: torch.Tensor, slots: torch.Tensor, attend: int):
        """Logits [B, V] (fp32) of the last position of `tokens` [B, T]; writes K/V at `slots` [T]."""
        W = self._weights
        B, T = tokens.shape
        nh, nkv, hd = self.nh, self.nkv, self.hd
        x = F.embedding(tokens, W["embed"]).float()  # residual stream in fp32
        cos = s["cos"][pos][:, None]  # [B, 1, T, hd]
        sin = s["sin"][pos][:, None]
        # key j is visible to query slot i when it holds a real token and j <= i; a padding query sees itself
        # (no all-masked rows: their NaNs would reach the cache through 0 * NaN)
        keys = s["arange"][:attend]
        mask = s["valid"][:, None, None, :attend] & (keys[None, None, None, :] <= slots[None, None, :, None])
        mask = mask | (keys[None, None, None, :] == slots[None, None, :, None])
        grp = nh // nkv  # query heads per KV head (transformers' repeat_kv: KV head i serves heads i*g .. i*g+g-1)
        if T > 1:
            mask = mask.repeat(1, 1, grp, 1)  # rows ordered (head in group, position), as qg below
        # one-token decode steps run the compiled layer when asked (the prefill's shapes vary: eager)
        layer = self._layer_compiled if T == 1 and self._layer_compiled is not None else _layer

        def layers(layer, x):
            for i in range(self.n_layers):
                x = layer(x, W[f"{i}.ln1"], W[f"{i}.qkv_w"], W[f"{i}.qkv_b"], W[f"{i}.o_w"], W[f"{i}.ln2"],
                          W[f"{i}.gu_w"], W[f"{i}.down_w"], s["k"][i], s["v"][i], cos, sin, mask, slots, attend,
                          nh, nkv, hd, self.eps)
            return x

        try:
            x = layers(layer, x)
        except Exception as exc:  # no compiler toolchain, an inductor bug...: decode eagerly, say so once
            if layer is _layer or (torch.cuda.is_available() and torch.cuda.is_current_stream_capturing()):
                raise
            warnings.warn(f"hf_compile: torch.compile of the decoder layer failed ({type(exc).__name__}: "
                          f"{str(exc).splitlines()[0] if str(exc) else ''}); decoding eagerly")
            self._layer_compiled = None
            x = layers(_layer, x)  # rewrites the same K/V slots
        h = _rms(x[:, -1], W["norm"], self.eps)
        return F.linear(h, W.get("head", W["embed"])).float()

    def _sample_and_record(self, s: dict, logits: torch.Tensor, temperature: float) -> None:
        """EOS suppression before min_tokens, one draw per row, bookkeeping; all on device (graph-safe)."""
        eos = s["eos_ids"]
        early = s["step"] < s["min_tokens"]  # [1] bool
        logits[:, eos] = logits[:, eos].masked_fill(early[:, None], float("-inf"))
        noise = torch.empty_like(logits).exponential_() if temperature > 0 else None
        tok, lp = sample_tokens(logits, temperature, noise)
        pad = eos[0]
        tok = torch.where(s["done"], pad, tok)
        s["out"].index_copy_(1, s["step"], tok[:, None])
        s["out_lp"].index_copy_(1, s["step"], lp[:, None])
        s["done"] |= (tok[:, None] == eos[None, :]).any(1)
        s["tok"].copy_(tok)
        s["step"] += 1

    def _decode_step(self, s: dict, temperature: float, attend: int) -> None:
        logits = self._forward(s, s["tok"][:, None], s["pos"][:, None], s["slot"], attend)
        self._sample_and_record(s, logits, temperature)
        s["pos"] += 1
        s["slot"] += 1

    def _graph_step(self, s: dict, temperature: float, attend: int):
        key = (temperature, attend)
        g = self._graphs.get(key)
        if g is None:
            # capture on a side stream after a warm-up run (cuBLAS/SDPA pick their kernels eagerly first).
            # The warm-up decodes for real, so the caller's state must tolerate one extra step: capture is
            # done on a scratch copy of the small per-row buffers, restored afterwards
            saved = {k: s[k].clone() for k in ("tok", "pos", "slot", "step", "done", "out", "out_lp")}
            stream = torch.cuda.Stream()
            stream.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(stream):
                self._decode_step(s, temperature, attend)
            torch.cuda.current_stream().wait_stream(stream)
            for k, v in saved.items():
                s[k].copy_(v)
            g = torch.cuda.CUDAGraph()
            with torch.cuda.graph(g, pool=self._pool):
                self._decode_step(s, temperature, attend)
            self._pool = g.pool()
            for k, v in saved.items():  # capture records the step without the data settling: start clean
                s[k].copy_(v)
            self._graphs[key] = g
        return g

    # -- public -----------------------------------------------------------------------------------
    @torch.no_grad()
    def generate(self, prompts: list[list[int]], max_new: int, temperature: float, eos: list[int],
                 min_tokens: int = 0, check_every: int = 16) -> tuple[list[list[int]], list[list[float]]]:
        """Token ids (cut after the first EOS, which is kept) and their processed log-probs per prompt."""
        B = len(prompts)
        width = max(len(p) for p in prompts)
        s = self._ensure_state(B, width + max_new, max_new, list(eos))
        dev = self.device
        ids = torch.full((B, width), eos[0], dtype=torch.long)
        pads = torch.tensor([width - len(p) for p in prompts])
        for r, p in enumerate(prompts):
            ids[r, width - len(p):] = torch.tensor(p)
        ids, pads = ids.to(dev), pads.to(dev)
        cols = torch.arange(width, device=dev)
        s["valid"].zero_()
        s["valid"][:, :width] = cols[None] >= pads[:, None]
        s["valid"][:, width:] = True  # generated slots; causality limits them to those already written
        s["done"].zero_()
        s["out"].zero_()
        s["out_lp"].zero_()
        s["step"].zero_()
        s["min_tokens"].fill_(min_tokens)
        pos = (cols[None] - pads[:, None]).clamp(min=0)
        attend = min(s["S"], -(-width // self.bucket) * self.bucket)
        logits = self._forward(s, ids, pos, cols, attend)  # prefill
        self._sample_and_record(s, logits, temperature)
        s["pos"].copy_(width - pads)
        s["slot"].fill_(width)
        for t in range(1, max_new):
            attend = min(s["S"], -(-(width + t + 1) // self.bucket) * self.bucket)
            if self.use_graphs:
                self._graph_step(s, temperature, attend).replay()
            else:
                self._decode_step(s, temperature, attend)
            if t % check_every == 0 and bool(s["done"].all()):
                break
        out, out_lp = s["out"][:, :max_new].tolist(), s["out_lp"][:, :max_new].tolist()
        eos_set = set(eos)
        toks, lps = [], []
        for r in range(B):
            row, lrow = out[r], out_lp[r]
            n = next((k + 1 for k, t in enumerate(row) if t in eos_set), len(row))
            toks.append(row[:n])
            lps.append(lrow[:n])
        return toks, lps

    def release(self) -> None:
        """Free the KV cache and graphs (e.g. before the update phase needs the memory)."""
        self._graphs.clear()
        self._pool = None
        self._state = None
        if self.device.type == "cuda":
            torch.cuda.empty_cache()
