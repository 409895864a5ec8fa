# One-shot RLVR (arXiv 2504.20571): data selection -> training -> evaluation -> tables/figures.
# Usage: snakemake --configfile config/demo.yaml --cores 2   (docs/pipeline.md)
# Results: results/<config name>/{data/, runs/<model>/<run>/{RUN.yaml,train/,eval/step_<k>/,best.json},
#          metrics.csv, experiments/<E>/metrics.csv, tables/, figures/}
import os

from snakemake.utils import min_version

min_version("9.0")


# The paper's registry by default; `--configfile config/demo.yaml` *replaces* it (Snakemake would
# otherwise deep-merge both files, mixing the demo with the paper's experiments). Asked on the
# config files, not on `config`: `--config key=value` alone fills `config` but must keep the default.
if not workflow.config_settings.configfiles:

    configfile: "config/config.yaml"



include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/eval.smk"


# Optional rule files: report.smk may define REPORT_TARGETS (tables, figures), retention.smk
# RETENTION_TARGETS (checkpoint pruning after evaluation), toy.smk builds miniature-world models.
for _smk in ("report", "retention", "toy"):
    if os.path.exists(os.path.join(workflow.basedir, f"workflow/rules/{_smk}.smk")):

        include: f"workflow/rules/{_smk}.smk"


rule all:
    default_target: True
    input:
        f"results/{NAME}/metrics.csv",
        expand("results/{name}/experiments/{experiment}/metrics.csv", name=NAME, experiment=PLAN.default_experiments),
        globals().get("REPORT_TARGETS", []),
        globals().get("RETENTION_TARGETS", []),
