# Released CromSS weights (finetune.weights: release-13B-midF, release-13B-lateF, release-9B-midF,
# release-9B-lateF): fetched through the Hugging Face source of data.real (resumable, verified,
# kept in its download_dir) and exported as the same encoder files a pretraining variant writes.
RELEASE_SOURCE_KEYS = ("huggingface_url", "download_dir", "retry", "weights")


rule release_encoders:
    output:
        encoder_file("{release}", "s1"),
        encoder_file("{release}", "s2"),
        published_files("{release}", "s1"),
        published_files("{release}", "s2"),
    wildcard_constraints:
        release="|".join(RELEASES),
    params:
        settings=as_json({k: v for k, v in config["data"].get("real", {}).items()
                          if k in RELEASE_SOURCE_KEYS}),
        out=lambda w: f"{RESULTS}/pretrain/{w.release}",
    conda:
        CONDA_ENV
    log:
        f"{LOGS}/release/{{release}}.log",
    benchmark:
        f"{BENCH}/release/{{release}}.tsv"
    resources:
        mem_mb=4000,
        runtime=60,
    shell:
        "cromss weights release --name {wildcards.release} --settings {params.settings:q}"
        " --out {params.out:q} --quiet > {log:q} 2>&1"
