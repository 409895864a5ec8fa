# Paper-style tables and figures from the collected long table results/<name>/metrics.csv.
# All logic is in oneshot_rlvr.report (rlvr tables / rlvr figures); this file only names the files.
# Every table CSV and figure PNG is a report() item, so `snakemake --report report.html` shows them
# with the captions in workflow/report/*.rst.
from oneshot_rlvr.report.figures import FIGURES as REPORT_FIGURES
from oneshot_rlvr.report.tables import TABLES as _REPORT_TABLE_SPECS

REPORT_TABLES = sorted(_REPORT_TABLE_SPECS, key=lambda t: _REPORT_TABLE_SPECS[t].number)
# Optional config block `report: {grader: qwen, model: <key>}`; defaults: the qwen grader, and the
# model chosen by `rlvr tables` (qwen2.5-math-1.5b if present, else the config's main model).
_REPORT_CFG = config.get("report", {}) or {}
_REPORT_GRADER = _REPORT_CFG.get("grader", "qwen")
_REPORT_MODEL_ARG = f"--model {_REPORT_CFG['model']}" if _REPORT_CFG.get("model") else ""


rule tables:
    input:
        "results/{name}/metrics.csv",
    output:
        [
            report(
                f"results/{{name}}/tables/{t}.csv",
                caption=f"../report/{t}.rst",
                category="Tables",
                labels={"table": f"Table {_REPORT_TABLE_SPECS[t].number}"},
            )
            for t in REPORT_TABLES
        ],
        [f"results/{{name}}/tables/{t}.{ext}" for t in REPORT_TABLES for ext in ("md", "tex")],
        "results/{name}/tables/tables.md",
    log:
        "results/{name}/logs/tables.log",
    localrule: True
    params:
        rlvr=RLVR,
        grader=_REPORT_GRADER,
        model=_REPORT_MODEL_ARG,
    conda:
        "../../envs/rlvr.yaml"
    shell:
        "{params.rlvr} tables --metrics {input} --out results/{wildcards.name}/tables "
        "--grader {params.grader} {params.model} > {log} 2>&1"


rule figures:
    input:
        "results/{name}/metrics.csv",
    output:
        [
            report(
                f"results/{{name}}/figures/{f}.png",
                caption=f"../report/{f}.rst",
                category="Figures",
                labels={"figure": f"Fig. {f[3:]}"},
            )
            for f in REPORT_FIGURES
        ],
        [f"results/{{name}}/figures/{f}.pdf" for f in REPORT_FIGURES],
    log:
        "results/{name}/logs/figures.log",
    localrule: True
    params:
        rlvr=RLVR,
        grader=_REPORT_GRADER,
        model=_REPORT_MODEL_ARG,
    conda:
        "../../envs/rlvr.yaml"
    shell:
        "{params.rlvr} figures --metrics {input} --out results/{wildcards.name}/figures "
        "--grader {params.grader} {params.model} > {log} 2>&1"


# Extended into `rule all` by the Snakefile.
REPORT_TARGETS = [
    *(f"results/{NAME}/tables/{t}.{ext}" for t in REPORT_TABLES for ext in ("md", "tex", "csv")),
    f"results/{NAME}/tables/tables.md",
    *(f"results/{NAME}/figures/{f}.{ext}" for f in REPORT_FIGURES for ext in ("png", "pdf")),
]
