# CromSS pretraining on the noisy-label store: one job per variant, then one encoder file per modality.


rule pretrain:
    input:
        store("nol"),
    output:
        model=f"{RESULTS}/pretrain/{{variant}}/model.pt",
        log=f"{RESULTS}/pretrain/{{variant}}/log.jsonl",
    params:
        settings=lambda w: as_json(pretrain_settings(w.variant)),
        launcher=launcher,
        threads=threads_per_process,
        workdir=lambda w: f"{RESULTS}/pretrain/{w.variant}",
    threads: 2
    priority: 10  # the longest path of the DAG: start it first
    resources:
        mem_mb=16000,
        runtime=48 * 60,
        gpu=GPUS,
    conda:
        CONDA_ENV
    log:
        f"{LOGS}/pretrain/{{variant}}.log",
    benchmark:
        f"{BENCH}/pretrain/{{variant}}.tsv"
    shell:
        "{params.launcher} pretrain --store {input} --settings {params.settings:q}"
        " --threads {params.threads} --out {params.workdir} > {log} 2>&1"


rule encoder:
    input:
        f"{RESULTS}/pretrain/{{variant}}/model.pt",
    output:
        f"{RESULTS}/pretrain/{{variant}}/encoder_{{modality}}.pt",
    conda:
        CONDA_ENV
    log:
        f"{LOGS}/encoder/{{variant}}_{{modality}}.log",
    benchmark:
        f"{BENCH}/encoder/{{variant}}_{{modality}}.tsv"
    resources:
        mem_mb=2000,
        runtime=5,
    shell:
        "cromss export-encoder --model {input} --modality {wildcards.modality} --out {output} > {log} 2>&1"
