# Downstream transfer: a new decoder on one modality's encoder, frozen or fine-tuned, per seed.


rule finetune:
    input:
        train=lambda w: store(f"{w.task}_train"),
        encoder=encoder_input,
    output:
        model=f"{FT_DIR}/model.pt",
        log=f"{FT_DIR}/log.jsonl",
    params:
        settings=lambda w: as_json(finetune_settings()),
        encoder=lambda w, input: input.encoder or "random",
        workdir=FT_DIR,
    threads: 1
    resources:
        mem_mb=8000,
        runtime=12 * 60,
        gpu=min(GPUS, 1),
    conda:
        CONDA_ENV
    log:
        f"{LOGS}/finetune/{{task}}_{{modality}}_{{weights}}_{{setting}}_seed{{seed}}.log",
    benchmark:
        f"{BENCH}/finetune/{{task}}_{{modality}}_{{weights}}_{{setting}}_seed{{seed}}.tsv"
    shell:
        "cromss finetune --task {wildcards.task} --modality {wildcards.modality}"
        " --encoder {params.encoder} --setting {wildcards.setting} --seed {wildcards.seed}"
        " --train {input.train} --settings {params.settings:q} --threads {threads}"
        " --out {params.workdir} > {log} 2>&1"


rule evaluate:
    input:
        models=expand(f"{FT_DIR}/model.pt", seed=FT["seeds"], allow_missing=True),
        test=lambda w: store(f"{w.task}_test"),
    output:
        expand(f"{FT_DIR}/metrics.json", seed=FT["seeds"], allow_missing=True),
    threads: 1
    resources:
        mem_mb=4000,
        runtime=60,
        gpu=min(GPUS, 1),
    conda:
        CONDA_ENV
    log:
        f"{LOGS}/evaluate/{{task}}_{{modality}}_{{weights}}_{{setting}}.log",
    benchmark:
        f"{BENCH}/evaluate/{{task}}_{{modality}}_{{weights}}_{{setting}}.tsv"
    shell:
        "cromss evaluate --model {input.models} --test {input.test} --threads {threads}"
        " --out {output} > {log} 2>&1"
