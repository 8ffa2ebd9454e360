# One target per DVC stage (dvc.yaml): `snakemake --cores all data|pretraining|transfer` builds it,
# and `published` the encoders' folders to publish (not a DVC stage: built from the encoders).


rule pretraining:
    input:
        expand(f"{RESULTS}/pretrain/{{variant}}/log.jsonl", variant=VARIANTS),
        [encoder_file(v, m) for v in VARIANTS for m in variant_modalities(v)],


rule transfer:
    input:
        metrics_files(table_runs_all()),
        BEST_MODELS,
        [predictions_figure(t) for t in FT["tasks"]],


rule published:
    input:
        [f for w in (*VARIANTS, *(set(FT["weights"]) & set(RELEASES)))
         for m in variant_modalities(w) for f in published_files(w, m)],
