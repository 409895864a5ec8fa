"""The miniature world: a synthetic verifiable arithmetic task family, its tokenizer and a small base model.

tasks.py (problems, answers, worked solutions with slips), world.py (pool / test sets / manifest),
tokenizer.py (compact BPE with the real chat template), pretrain.py (supervised warm-up of the base
model), measure.py (greedy and pass@n accuracy with plain transformers generate). See docs/miniature.md.
"""
