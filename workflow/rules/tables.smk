# The paper's transfer tables (1-3) with the published values beside ours, and the ablation (4).

rule transfer_table:
    input:
        metrics=lambda w: metrics_files(table_runs(TASK_OF_TABLE[int(w.number)])),
        reference=lambda w: REFERENCE[int(w.number)],
    output:
        csv=report(f"{RESULTS}/tables/table{{number}}.csv", category="Tables",
                   caption="../report/table.rst", labels={"table": "{number}"}),
        md=f"{RESULTS}/tables/table{{number}}.md",
    wildcard_constraints:
        number="[123]",
    params:
        task=lambda w: TASK_OF_TABLE[int(w.number)],
        pretrain=lambda w: as_json(config["pretrain"]),
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
        "cromss tables --task {params.task} --metrics {input.metrics}"
        " --reference {input.reference} --variants {params.pretrain:q} --out {output.csv} > {log} 2>&1"


rule ablation_table:
    input:
        logs=expand(f"{RESULTS}/pretrain/{{variant}}/log.jsonl", variant=VARIANTS),
        metrics=metrics_files(ablation_runs()),
    output:
        csv=report(f"{RESULTS}/tables/table4.csv", category="Tables",
                   caption="../report/table4.rst", labels={"table": "4"}),
        md=f"{RESULTS}/tables/table4.md",
    params:
        pretrain=lambda w: as_json(config["pretrain"]),
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
        "cromss table4 --pretrain-logs {input.logs} --variants {params.pretrain:q}"
        " --metrics {input.metrics} --out {output.csv} > {log} 2>&1"
