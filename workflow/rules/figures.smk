# Figures for `snakemake --report results/report.html`, and the files DVC reads as metrics/plots.


rule pretrain_figure:
    input:
        expand(f"{RESULTS}/pretrain/{{variant}}/log.jsonl", variant=VARIANTS),
    output:
        report(f"{RESULTS}/figures/{{name}}.png", category="Pretraining",
               caption="../report/pretrain_figure.rst"),
    wildcard_constraints:
        name="pretrain_curves|selection",
    params:
        figure=lambda w: w.name.replace("_", "-"),
    conda:
        CONDA_ENV
    log:
        f"{LOGS}/figures/{{name}}.log",
    benchmark:
        f"{BENCH}/figures/{{name}}.tsv"
    resources:
        mem_mb=1000,
        runtime=5,
    shell:
        "cromss report figure {params.figure} --pretrain-logs {input:q} --out {output:q} > {log:q} 2>&1"


rule transfer_figure:
    input:
        lambda w: metrics_files(table_runs(w.task)),
    output:
        report(f"{RESULTS}/figures/{{task}}_{{name}}.png", category="Transfer",
               subcategory="{task}", caption="../report/transfer_figure.rst"),
    wildcard_constraints:
        name="class_iou|confusion",
    params:
        figure=lambda w: w.name.replace("_", "-"),
        setting=FT["settings"][-1],
    conda:
        CONDA_ENV
    log:
        f"{LOGS}/figures/{{task}}_{{name}}.log",
    benchmark:
        f"{BENCH}/figures/{{task}}_{{name}}.tsv"
    resources:
        mem_mb=1000,
        runtime=5,
    shell:
        "cromss report figure {params.figure} --metrics {input:q} --setting {params.setting:q}"
        " --out {output:q} > {log:q} 2>&1"


rule ablation_figure:
    input:
        f"{RESULTS}/tables/table4.csv",
    output:
        report(f"{RESULTS}/figures/ablation.png", category="Pretraining",
               caption="../report/ablation_figure.rst"),
    conda:
        CONDA_ENV
    log:
        f"{LOGS}/figures/ablation.log",
    benchmark:
        f"{BENCH}/figures/ablation.tsv"
    resources:
        mem_mb=1000,
        runtime=5,
    shell:
        "cromss report figure ablation --table {input:q} --out {output:q} > {log:q} 2>&1"


# Plain files, not directory() outputs: DVC reads every file of these folders as metrics, and a
# directory output's .snakemake_timestamp would be one.
# The page `dvc plots show` fills (.dvc/config: plots.html_template), with Vega inline: offline.
rule plots_page:
    output:
        f"{RESULTS}/metrics/plots_page.html",
    conda:
        CONDA_ENV
    log:
        f"{LOGS}/plots_page.log",
    resources:
        mem_mb=500,
        runtime=5,
    shell:
        "cromss report plots-page --out {output:q} > {log:q} 2>&1"


rule metrics_summary:
    input:
        metrics=metrics_files(table_runs_all()),
        logs=expand(f"{RESULTS}/pretrain/{{variant}}/log.jsonl", variant=VARIANTS),
    output:
        transfer=sorted({f"{RESULTS}/metrics/transfer/{r['task']}_{r['weights']}.json"
                         for r in table_runs_all()}),
        pretrain=expand(f"{RESULTS}/metrics/pretrain/{{variant}}.json", variant=VARIANTS),
        curves=f"{RESULTS}/metrics/pretrain_curves.csv",
    conda:
        CONDA_ENV
    log:
        f"{LOGS}/metrics_summary.log",
    benchmark:
        f"{BENCH}/metrics_summary.tsv"
    resources:
        mem_mb=1000,
        runtime=5,
    shell:
        "cromss report metrics-summary --metrics {input.metrics:q} --pretrain-logs {input.logs:q}"
        f" --transfer-dir {RESULTS}/metrics/transfer --pretrain-dir {RESULTS}/metrics/pretrain"
        " --curves {output.curves:q} > {log:q} 2>&1"


rule samples_figure:
    input:
        model=f"{RESULTS}/pretrain/{SELECTION_VARIANT}/model.pt",
        store=store("nol"),
    output:
        report(f"{RESULTS}/figures/samples.png", category="Pretraining",
               caption="../report/samples.rst"),
    params:
        shown=config.get("report", {}).get("samples", 4),
    conda:
        CONDA_ENV
    log:
        f"{LOGS}/figures/samples.log",
    benchmark:
        f"{BENCH}/figures/samples.tsv"
    resources:
        mem_mb=4000,
        runtime=10,
    shell:
        "cromss report figure samples --model {input.model:q} --store {input.store:q}"
        " --count {params.shown} --out {output:q} > {log:q} 2>&1"


rule predictions_figure:
    input:
        models=lambda w: [f"{FT_DIR}/model.pt".format(**r) for r in prediction_runs(w.task)],
        test=lambda w: store(f"{w.task}_test"),
    output:
        report(predictions_figure("{task}"), category="Transfer",
               subcategory="{task}", caption="../report/predictions.rst"),
    params:
        models=lambda w, input: [f"{r['weights']}={path}"
                                 for r, path in zip(prediction_runs(w.task), input.models)],
        shown=config.get("report", {}).get("samples", 4),
    conda:
        CONDA_ENV
    log:
        f"{LOGS}/figures/{{task}}_predictions.log",
    benchmark:
        f"{BENCH}/figures/{{task}}_predictions.tsv"
    resources:
        mem_mb=4000,
        runtime=10,
    shell:
        "cromss report figure predictions --model {params.models:q} --store {input.test:q}"
        " --count {params.shown} --out {output:q} > {log:q} 2>&1"
