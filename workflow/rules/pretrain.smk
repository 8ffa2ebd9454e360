# CromSS pretraining on the noisy-label store: one job per variant, which also exports the encoder
# of each of its modalities for transfer (a file torchgeo reads too), with its published folder
# (safetensors, Hub card, STAC MLM item; one rule per set of modalities: outputs are static).


rule pretrain:
    input:
        store("nol"),
    output:
        model=f"{RESULTS}/pretrain/{{variant}}/model.pt",
        log=f"{RESULTS}/pretrain/{{variant}}/log.jsonl",
        encoders=expand(encoder_file("{variant}", "{modality}"), modality=["s1", "s2"],
                        allow_missing=True),
        published=expand(published_files("{variant}", "{modality}"), modality=["s1", "s2"],
                         allow_missing=True),
    wildcard_constraints:
        variant=variants_with(["s1", "s2"]),
    params:
        settings=lambda w: as_json(pretrain_settings(w.variant)),
        launcher=launcher,
        threads=threads_per_process,
        workdir=lambda w: f"{RESULTS}/pretrain/{w.variant}",
    threads: pretrain_threads()
    priority: 10  # the longest path of the DAG: start it first
    resources:
        mem_mb=pretrain_mem_mb(),
        runtime=48 * 60,
        **training_resources(),
    conda:
        CONDA_ENV
    log:
        f"{LOGS}/pretrain/{{variant}}.log",
    benchmark:
        f"{BENCH}/pretrain/{{variant}}.tsv"
    shell:
        "{params.launcher} pretrain run --store {input:q} --settings {params.settings:q}"
        " --threads {params.threads} --out {params.workdir:q} --export-encoders > {log:q} 2>&1"


use rule pretrain as pretrain_s1 with:
    output:
        model=f"{RESULTS}/pretrain/{{variant}}/model.pt",
        log=f"{RESULTS}/pretrain/{{variant}}/log.jsonl",
        encoders=[encoder_file("{variant}", "s1")],
        published=published_files("{variant}", "s1"),
    wildcard_constraints:
        variant=variants_with(["s1"]),


use rule pretrain as pretrain_s2 with:
    output:
        model=f"{RESULTS}/pretrain/{{variant}}/model.pt",
        log=f"{RESULTS}/pretrain/{{variant}}/log.jsonl",
        encoders=[encoder_file("{variant}", "s2")],
        published=published_files("{variant}", "s2"),
    wildcard_constraints:
        variant=variants_with(["s2"]),
