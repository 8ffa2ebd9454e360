# One target per DVC stage (dvc.yaml): `snakemake --cores all data|pretraining|transfer` builds it.


rule pretraining:
    input:
        expand(f"{RESULTS}/pretrain/{{variant}}/log.jsonl", variant=VARIANTS),
        [encoder_file(v, m) for v in VARIANTS for m in variant_modalities(v)],
        [f for v in VARIANTS for m in variant_modalities(v) for f in published_files(v, m)],


rule transfer:
    input:
        metrics_files(table_runs_all()),
        BEST_MODELS,
        [predictions_figure(t) for t in FT["tasks"]],

