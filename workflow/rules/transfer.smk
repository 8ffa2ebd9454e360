# Downstream transfer: a new decoder on one modality's encoder, frozen or fine-tuned, per seed.
# One job trains every setting and seed of a (task, modality, weights) group and evaluates each
# run as it completes, in the process that trained it: the group's runs share all their inputs,
# so the DAG reruns exactly what a changed input affects, and the start-up is paid once per group.
# The runs' model files are temporary unless finetune.keep_models: what is kept of them is each
# mapped task's best model (best_model) and the predictions figure (figures.smk).


rule transfer_runs:
    input:
        train=lambda w: store(f"{w.task}_train"),
        test=lambda w: store(f"{w.task}_test"),
        encoder=encoder_input,
    output:
        models=group_models(FT["settings"]),
        logs=group_outputs("log.jsonl", FT["settings"]),
        metrics=group_outputs("metrics.json", FT["settings"]),
    wildcard_constraints:
        weights="|".join(FT["weights"]),
    params:
        settings=lambda w: as_json(finetune_settings()),
        encoder=lambda w, input: input.encoder or "random",
        group=FT["settings"],
        seeds=FT["seeds"],
        out=group_run_dir,
    threads: 1
    resources:
        mem_mb=8000,
        runtime=12 * 60,
        gpu=min(GPUS, 1),
    conda:
        CONDA_ENV
    log:
        f"{LOGS}/finetune/{{task}}_{{modality}}_{{weights}}.log",
    benchmark:
        f"{BENCH}/finetune/{{task}}_{{modality}}_{{weights}}.tsv"
    shell:
        "cromss finetune group --task {wildcards.task} --modality {wildcards.modality}"
        " --encoder {params.encoder:q} --setting {params.group} --seed {params.seeds}"
        " --train {input.train:q} --test {input.test:q} --settings {params.settings:q}"
        " --threads {threads} --out {params.out:q} > {log:q} 2>&1"


# The ablation encoders that only table 4 transfers: its one task, modality and setting.
use rule transfer_runs as ablation_transfer_runs with:
    output:
        models=group_models([FT["ablation"]["setting"]]),
        logs=group_outputs("log.jsonl", [FT["ablation"]["setting"]]),
        metrics=group_outputs("metrics.json", [FT["ablation"]["setting"]]),
    wildcard_constraints:
        task=FT["ablation"]["task"],
        modality=FT["ablation"]["modality"],
        weights=ABLATION_ONLY,
    params:
        settings=lambda w: as_json(finetune_settings()),
        encoder=lambda w, input: input.encoder or "random",
        group=[FT["ablation"]["setting"]],
        seeds=FT["seeds"],
        out=group_run_dir,
    log:
        f"{LOGS}/finetune/{{task}}_{{modality}}_{{weights}}_ablation.log",
    benchmark:
        f"{BENCH}/finetune/{{task}}_{{modality}}_{{weights}}_ablation.tsv"


# A copy of the model of the task's run with the highest test mIoU, for its maps (maps.smk).
rule best_model:
    input:
        metrics=lambda w: metrics_files(table_runs(w.task)),
        models=lambda w: [f"{FT_DIR}/model.pt".format(**r) for r in table_runs(w.task)],
    output:
        model=best_model_file("{task}"),
        choice=f"{RESULTS}/finetune/{{task}}/best/choice.json",
    conda:
        CONDA_ENV
    log:
        f"{LOGS}/finetune/{{task}}_best.log",
    benchmark:
        f"{BENCH}/finetune/{{task}}_best.tsv"
    resources:
        mem_mb=1000,
        runtime=5,
    shell:
        "cromss finetune best --metrics {input.metrics:q} --out {output.model:q}"
        " --choice {output.choice:q} > {log:q} 2>&1"
