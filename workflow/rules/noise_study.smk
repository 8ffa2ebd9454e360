# The optional label-noise study (`snakemake --cores all noise_study`; config noise_study): per
# noise level a synthetic world whose NoL labels have that noise, its NoL store, each variant
# pretrained on it and transferred to one task/modality/setting on the main world's downstream
# stores (the label noise touches only the noisy NoL labels: cromss.data.synthetic), then one
# table and one figure. Thin rules calling the same `cromss` commands as data/pretrain/transfer.

use rule synthetic_world as noise_world with:
    output:
        directory(f"{NOISE_DIR}/raw"),
    wildcard_constraints:
        level=r"\d+(\.\d+)?",
    params:
        settings=lambda w: as_json({**config["data"].get("synthetic", {}),
                                    "label_noise": float(w.level)}),
    log:
        f"{LOGS}/noise_study/noise{{level}}/world.log",
    benchmark:
        f"{BENCH}/noise_study/noise{{level}}/world.tsv"


rule noise_nol_store:
    input:
        f"{NOISE_DIR}/raw",
    output:
        directory(f"{NOISE_DIR}/nol.zarr"),
    wildcard_constraints:
        level=r"\d+(\.\d+)?",
    params:
        shard_samples=INGEST_PARAMS["shard_samples"],
    conda:
        CONDA_ENV
    log:
        f"{LOGS}/noise_study/noise{{level}}/nol_store.log",
    benchmark:
        f"{BENCH}/noise_study/noise{{level}}/nol_store.tsv"
    threads: 2
    resources:
        mem_mb=8000,
        runtime=12 * 60,
    shell:
        "cromss data ingest nol --raw {input:q} --out {output:q}"
        " --shard-samples {params.shard_samples} --workers {threads} > {log:q} 2>&1"


use rule pretrain as noise_pretrain with:
    input:
        f"{NOISE_DIR}/nol.zarr",
    output:
        model=f"{NOISE_DIR}/pretrain/{{variant}}/model.pt",
        log=f"{NOISE_DIR}/pretrain/{{variant}}/log.jsonl",
        encoder=f"{NOISE_DIR}/pretrain/{{variant}}/encoder_{NOISE['modality']}.pt",
    wildcard_constraints:
        level=r"\d+(\.\d+)?",
    params:
        settings=lambda w: as_json(pretrain_settings(w.variant)),
        launcher=launcher,
        threads=threads_per_process,
        workdir=lambda w, output: os.path.dirname(output.model),
    log:
        f"{LOGS}/noise_study/noise{{level}}/pretrain_{{variant}}.log",
    benchmark:
        f"{BENCH}/noise_study/noise{{level}}/pretrain_{{variant}}.tsv"


rule noise_transfer:
    input:
        train=store(f"{NOISE['task']}_train"),
        test=store(f"{NOISE['task']}_test"),
        encoder=f"{NOISE_DIR}/pretrain/{{variant}}/encoder_{NOISE['modality']}.pt",
    output:
        models=run_models(expand(f"{NOISE_RUN}/model.pt", seed=FT["seeds"], allow_missing=True)),
        metrics=expand(f"{NOISE_RUN}/metrics.json", seed=FT["seeds"], allow_missing=True),
    wildcard_constraints:
        level=r"\d+(\.\d+)?",
    params:
        settings=lambda w: as_json(finetune_settings()),
        seeds=FT["seeds"],
        out=lambda w: f"{NOISE_ROOT}/noise{w.level}/finetune/{w.variant}/{{setting}}/seed{{seed}}",
    threads: 1
    resources:
        mem_mb=8000,
        runtime=12 * 60,
        gpu=min(GPUS, 1),
    conda:
        CONDA_ENV
    log:
        f"{LOGS}/noise_study/noise{{level}}/finetune_{{variant}}.log",
    benchmark:
        f"{BENCH}/noise_study/noise{{level}}/finetune_{{variant}}.tsv"
    shell:
        f"cromss finetune group --task {NOISE['task']} --modality {NOISE['modality']}"
        f" --setting {NOISE['setting']}"
        " --encoder {input.encoder:q} --weights-name {wildcards.variant} --seed {params.seeds}"
        " --train {input.train:q} --test {input.test:q} --settings {params.settings:q}"
        " --threads {threads} --out {params.out:q} > {log:q} 2>&1"


rule noise_study_table:
    input:
        logs=lambda w: [f"{NOISE_DIR}/pretrain/{v}/log.jsonl".format(level=level)
                        for level in NOISE_LEVELS for v in noise_variants()],
        metrics=lambda w: [f"{NOISE_RUN}/metrics.json".format(level=level, variant=v, seed=s)
                           for level in NOISE_LEVELS for v in noise_variants()
                           for s in FT["seeds"]],
    output:
        f"{NOISE_ROOT}/noise_study.csv",
    params:
        arms=noise_arm_args,
        modality=NOISE["modality"],
    conda:
        CONDA_ENV
    log:
        f"{LOGS}/noise_study/table.log",
    benchmark:
        f"{BENCH}/noise_study/table.tsv"
    resources:
        mem_mb=1000,
        runtime=5,
    shell:
        "cromss report noise-study {params.arms} --modality {params.modality}"
        " --out {output:q} > {log:q} 2>&1"


rule noise_study_figure:
    input:
        f"{NOISE_ROOT}/noise_study.csv",
    output:
        report(f"{RESULTS}/figures/noise_study.png", category="Label noise",
               caption="../report/noise_study.rst"),
    conda:
        CONDA_ENV
    log:
        f"{LOGS}/figures/noise_study.log",
    benchmark:
        f"{BENCH}/figures/noise_study.tsv"
    resources:
        mem_mb=1000,
        runtime=5,
    shell:
        "cromss report figure noise-study --table {input:q} --out {output:q} > {log:q} 2>&1"


rule noise_study:
    input:
        f"{NOISE_ROOT}/noise_study.csv",
        f"{RESULTS}/figures/noise_study.png",
