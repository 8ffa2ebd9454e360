# The paper's transfer tables (1-3) with the published values beside ours, the ablation (4) and
# the paper's claims tested on this run: each as CSV (data), Markdown and HTML (the report's landing
# page and Tables view), every one saying where our rows come from (PROVENANCE: data, backbone,
# epochs, seeds of this config); and every transfer result as one long table.
from cromss.report.claims import one_component_off
from cromss.report.provenance import provenance_settings
from cromss.report.tables import resolve_variants

PROVENANCE = as_json(provenance_settings(config))
# the variants of a full/no-smoothing pair: their calibration against the true map (synthetic
# data only) tests the smoothing claim
CALIBRATED = sorted({name for pair in one_component_off(resolve_variants(config["pretrain"]))
                     if pair[2] == "smoothing" for name in pair[:2]}) if SOURCE == "synthetic" else []
CALIBRATION = f"{RESULTS}/metrics/calibration.json"


rule transfer_table:
    input:
        metrics=lambda w: metrics_files(table_runs(TASK_OF_TABLE[int(w.number)])),
        reference=lambda w: REFERENCE[int(w.number)],
    output:
        csv=report(f"{RESULTS}/tables/table{{number}}.csv", category="Tables",
                   caption="../report/table.rst", labels={"table": "{number}", "format": "CSV"}),
        md=f"{RESULTS}/tables/table{{number}}.md",
        html=report(f"{RESULTS}/tables/table{{number}}.html", category="Tables",
                    caption="../report/table.rst", labels={"table": "{number}", "format": "HTML"}),
    wildcard_constraints:
        number="[123]",
    params:
        task=lambda w: TASK_OF_TABLE[int(w.number)],
        pretrain=lambda w: as_json(config["pretrain"]),
        provenance=PROVENANCE,
    conda:
        CONDA_ENV
    log:
        f"{LOGS}/tables/table{{number}}.log",
    benchmark:
        f"{BENCH}/tables/table{{number}}.tsv"
    resources:
        mem_mb=1000,
        runtime=5,
    shell:
        "cromss report tables --task {params.task} --metrics {input.metrics:q}"
        " --reference {input.reference:q} --variants {params.pretrain:q}"
        " --provenance {params.provenance:q} --out {output.csv:q}"
        " > {log:q} 2>&1"


rule ablation_table:
    input:
        logs=expand(f"{RESULTS}/pretrain/{{variant}}/log.jsonl", variant=VARIANTS),
        metrics=metrics_files(ablation_runs()),
    output:
        csv=report(f"{RESULTS}/tables/table4.csv", category="Tables",
                   caption="../report/table4.rst", labels={"table": "4", "format": "CSV"}),
        md=f"{RESULTS}/tables/table4.md",
        html=report(f"{RESULTS}/tables/table4.html", category="Tables",
                    caption="../report/table4.rst", labels={"table": "4", "format": "HTML"}),
    params:
        pretrain=lambda w: as_json(config["pretrain"]),
        provenance=PROVENANCE,
    conda:
        CONDA_ENV
    log:
        f"{LOGS}/tables/table4.log",
    benchmark:
        f"{BENCH}/tables/table4.tsv"
    resources:
        mem_mb=1000,
        runtime=5,
    shell:
        "cromss report table4 --pretrain-logs {input.logs:q} --variants {params.pretrain:q}"
        " --metrics {input.metrics:q} --provenance {params.provenance:q} --out {output.csv:q}"
        " > {log:q} 2>&1"


rule claims_table:
    input:
        metrics=metrics_files(table_runs_all()),
        reference=[REFERENCE[TASK_TABLE[t]] for t in FT["tasks"]],
        logs=expand(f"{RESULTS}/pretrain/{{variant}}/log.jsonl", variant=VARIANTS),
        calibration=[CALIBRATION] if CALIBRATED else [],
    output:
        csv=report(f"{RESULTS}/tables/claims.csv", category="Tables",
                   caption="../report/claims.rst", labels={"table": "claims", "format": "CSV"}),
        md=f"{RESULTS}/tables/claims.md",
        html=report(f"{RESULTS}/tables/claims.html", category="Tables",
                    caption="../report/claims.rst", labels={"table": "claims", "format": "HTML"}),
    params:
        pretrain=lambda w: as_json(config["pretrain"]),
        ablation=as_json(FT["ablation"]),
        calibration=f"--calibration {CALIBRATION}" if CALIBRATED else "",
        provenance=PROVENANCE,
    conda:
        CONDA_ENV
    log:
        f"{LOGS}/tables/claims.log",
    benchmark:
        f"{BENCH}/tables/claims.tsv"
    resources:
        mem_mb=2000,
        runtime=10,
    shell:
        "cromss report claims --metrics {input.metrics:q} --reference {input.reference:q}"
        " --pretrain-logs {input.logs:q} --variants {params.pretrain:q}"
        " --ablation {params.ablation:q} {params.calibration} --provenance {params.provenance:q} --out {output.csv:q} > {log:q} 2>&1"


rule long_table:
    input:
        metrics=metrics_files(table_runs_all()),
    output:
        report(f"{RESULTS}/tables/results_long.csv", category="Tables",
               caption="../report/results_long.rst", labels={"table": "long", "format": "CSV"}),
    conda:
        CONDA_ENV
    log:
        f"{LOGS}/tables/results_long.log",
    benchmark:
        f"{BENCH}/tables/results_long.tsv"
    resources:
        mem_mb=1000,
        runtime=5,
    shell:
        "cromss report long-table --metrics {input.metrics:q} --out {output:q} > {log:q} 2>&1"


rule calibration:
    input:
        models=expand(f"{RESULTS}/pretrain/{{variant}}/model.pt", variant=CALIBRATED),
        store=store("nol"),
    output:
        CALIBRATION,
    params:
        models=lambda w, input: " ".join(f"{v}={m}" for v, m in zip(CALIBRATED, input.models)),
    conda:
        CONDA_ENV
    log:
        f"{LOGS}/tables/calibration.log",
    benchmark:
        f"{BENCH}/tables/calibration.tsv"
    resources:
        mem_mb=2000,
        runtime=10,
    shell:
        "cromss report calibration --model {params.models} --store {input.store:q}"
        " --out {output:q} > {log:q} 2>&1"
