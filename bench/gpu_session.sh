#!/bin/bash
# Issue 7's GPU measurements in ONE call on a lent single-GPU machine (no internet: the packages it
# lacks travel as wheels in .whl/, filled by bench/gpu_wheels.sh). Every phase is time-boxed and writes
# its JSON as soon as it ends, so a phase that fails or runs out of time loses only itself.
#
#   bash bench/gpu_wheels.sh                       # here, once: .whl/ (git-ignored)
#   OUT=/tmp/gpu_out bash bench/gpu_session.sh     # on the GPU machine (the device tool sets $OUT)
#
# Phases (seconds are the caps; docs/gpu.md has what each one shows):
#   step     whole GRPO steps at TRL's anchor shape (32 prompts x 8, 256 forced tokens), hf engine
#            (static cache + CUDA graphs), with the naive transformers baseline in the same process
#   trl      TRL GRPOTrainer on the same shape, model and card (bench/trl_grpo_step.py)
#   update   log-prob + update at the paper's response length (3072), precision autocast: the fused log-prob
#            head against the plain-autograd one (refhead-) in the same process
#   update_bf16p  precision bf16-params (bf16 module, fp32 masters in the optimizer) by micro-batch variants:
#            MFU, peak memory, and a torch.profiler breakdown of one update by kernel class
#   rollout  our decoder at 256 x 1024 tokens, and the KV memory of a 256 x 3072 rollout
#   compile  the update at the paper's length with torch.compile'd layers + head (the trainer's torch_compile key),
#            bf16-params, padded (one compiled graph per layer) and packed (a graph break at attention), and packed
#            at the paper's own 24,000-token budget without checkpointing (fits the H200's memory, not an 80 GB card)
#   packing  the update at the paper's length on UNEVEN responses (uniform 256..3072 tokens): packed micro-batches
#            (sequence_packing, the default) against consecutive padded ones (pad-), eager and compiled, with the
#            packed attention as one varlen flash call per row (packed_attention auto) and one SDPA call per
#            sequence (sdpa-); the JSON has the kernel's self-check and its log-probs against sdpa's on the 1.5B model
#   zero     the update through DeepSpeed ZeRO-2 on one GPU (NCCL, bf16 + fp32 master weights)
#   ppo      whole PPO steps (adv_estimator gae) at the step phase's shape: the critic's value pass and its update
#            (8 optimizer steps of 128 sequences at 32 x 8 rollouts) next to the actor's phases; not in the default list
# PHASES="build step update trl" runs only those (a second call with little device time left); UPDATE_VARIANTS,
# BF16P_VARIANTS, STEP_PRECISION, STEP_ARGS, STEP_STEPS, STEP_CAP, ROLLOUT_ARGS, COMPILE_VARIANTS, COMPILE_CAP,
# PACKING_VARIANTS, PACKING_CAP and PPO_CAP
# override what those phases run.
# PRESET=targets: issue 7's two open targets in ONE call (about 7.5 min on an H200): our fastest step and TRL's
# in the same process lease (step >= 3x TRL), then the compiled update at the paper's length (MFU >= 0.5).
set -u
if [ "${PRESET:-}" = targets ]; then
    PHASES=${PHASES:-build step trl compile}
    STEP_CAP=${STEP_CAP:-230}
    STEP_ARGS=${STEP_ARGS:---hf-compile --torch-compile --no-baseline --gradient-checkpointing off --micro-batch-tokens 16384 --sequence-packing off}
fi
PHASES=" ${PHASES:-build update update_bf16p step trl rollout compile packing zero} "
OUT=${OUT:-/tmp/gpu_out}
mkdir -p "$OUT"
LOG="$OUT/session.log"
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
t0=$(date +%s)
say() { echo "[$(( $(date +%s) - t0 ))s] $*" | tee -a "$LOG"; }

if ls .whl/*.whl >/dev/null 2>&1; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
        .whl/*.whl >>"$LOG" 2>&1 || say "wheel install failed"
fi
export PYTHONPATH=/tmp/site:$PWD/src
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.max.sm,power.limit --format=csv \
    | tee -a "$LOG"
python3 -c "import torch, transformers; print('torch', torch.__version__, 'transformers', transformers.__version__)" \
    2>&1 | tee -a "$LOG"
python3 -c "import trl, deepspeed, math_verify; print('trl', trl.__version__, 'deepspeed', deepspeed.__version__)" \
    2>&1 | tail -1 | tee -a "$LOG"

M=/tmp/qwen15b-random
# SMOKE=1: the same phases at a toy shape, to check the script on a CPU before spending device time
P=32; N=8; R=256; RL=1024; UL=3072; UP=8; SL=3072; B=""
if [ "${SMOKE:-0}" = 1 ]; then
    P=2; N=4; R=8; RL=8; UL=16; UP=2; SL=32; M=/tmp/smoke-model
    rm -rf "$M"  # (an older smoke model may have another shape)
    B="--layers 2 --hidden 256 --heads 4 --kv-heads 2 --intermediate 512 --static-cache on --dtype float32"
fi
run() {  # run NAME CAP_SECONDS CMD...: time-boxed, output appended to the log
    local name=$1 cap=$2; shift 2
    case "$PHASES" in *" $name "*) ;; *) return 0 ;; esac
    say "== $name (cap ${cap}s): $*"
    timeout "$cap" "$@" >>"$LOG" 2>&1
    say "== $name exit $?"
}
if [ -f "$M/config.json" ]; then  # a second call on the same warm machine: the model is there already
    say "== build: $M exists, reused"
else
    run build 90 python3 bench/grpo_step.py $B --build-only "$M"
fi
run update 130 python3 bench/grpo_step.py $B --model-dir "$M" --mode update --prompts $UP --n 8 --response-len $UL \
    --variants ${UPDATE_VARIANTS:-refhead-ckpt:24000,ckpt:24000} --out "$OUT/update.json"
run update_bf16p 150 python3 bench/grpo_step.py $B --model-dir "$M" --mode update --prompts $UP --n 8 \
    --response-len $UL --precision bf16-params --variants ${BF16P_VARIANTS:-ckpt:24000,nockpt:8192,nockpt:16384,ckpt:49152} \
    --profile $UP --out "$OUT/update_bf16_params.json"
run step ${STEP_CAP:-170} python3 bench/grpo_step.py $B --model-dir "$M" --mode step --engine hf --prompts $P --n $N \
    --response-len $R --steps ${STEP_STEPS:-3} --precision ${STEP_PRECISION:-bf16-params} ${STEP_ARGS:-} --out "$OUT/step.json"
run trl 150 python3 bench/trl_grpo_step.py --model "$M" --prompts $P --n $N --response-len $R --steps 3 \
    --out "$OUT/trl.json"
run rollout 75 python3 bench/grpo_step.py $B --model-dir "$M" --mode rollout --engine hf --prompts $P --n $N \
    --response-len $RL --steps 2 --state-len $SL --profile 16 ${ROLLOUT_ARGS:-} --out "$OUT/rollout.json"
run compile ${COMPILE_CAP:-200} python3 bench/grpo_step.py $B --model-dir "$M" --mode update --prompts $UP --n 8 \
    --response-len $UL --precision bf16-params \
    --variants ${COMPILE_VARIANTS:-pad-compile-nockpt:16384,compile-nockpt:16384,compile-nockpt:24000} \
    --out "$OUT/update_compile.json"
run packing ${PACKING_CAP:-240} python3 bench/grpo_step.py $B --model-dir "$M" --mode update --prompts $UP --n 8 \
    --response-len $UL --min-response-len $((UL / 12)) --precision bf16-params \
    --variants ${PACKING_VARIANTS:-pad-nockpt:16384,sdpa-nockpt:16384,nockpt:16384,pad-compile-nockpt:16384,sdpa-compile-nockpt:16384,compile-nockpt:16384} \
    --out "$OUT/update_packing.json"
run ppo ${PPO_CAP:-150} python3 bench/grpo_step.py $B --model-dir "$M" --mode step --engine hf --prompts $P --n $N \
    --response-len $R --steps 2 --precision bf16-params --adv-estimator gae --no-baseline --out "$OUT/step_ppo.json"
run zero 60 python3 bench/grpo_step.py $B --model-dir "$M" --mode update --deepspeed --prompts 2 --n 8 \
    --response-len $RL --variants ckpt:24000 --out "$OUT/zero2.json"
say "done"
grep -E "^(phase|rollout|reward|values|logprob|update|step |TRL|steps|naive|speedup|kv_state|resident)|== |trl_step" "$LOG" | tail -60
