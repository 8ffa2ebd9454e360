# The paper's transfer tables (1-3) with the published values beside ours, and the ablation (4):
# each as CSV (data), Markdown and HTML (the report's landing page and Tables view), every one
# saying where our rows come from (PROVENANCE: data, backbone, epochs, seeds of this config).
from cromss.report.provenance import provenance_settings

PROVENANCE = as_json(provenance_settings(config))


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
