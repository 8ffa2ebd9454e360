# Raw data in the real on-disk layouts (synthetic world or real downloads) -> one Zarr store per split.

rule synthetic_world:
    output:
        directory(f"{config['data']['raw_dir']}/synthetic"),
    params:
        settings=lambda w: as_json(config["data"].get("synthetic", {})),
    conda:
        CONDA_ENV
    log:
        f"{LOGS}/synthetic_world.log",
    benchmark:
        f"{BENCH}/synthetic_world.tsv"
    resources:
        mem_mb=4000,
        runtime=30,
    shell:
        "cromss data synth --settings {params.settings:q} --out {output:q} > {log:q} 2>&1"


# Raw data is never an output of a rule, so Snakemake never removes it: a download job's output is
# only a flag next to the tree it fills (the fetchers add files and skip what is already there), and
# trees named in data.real.local are plain inputs, read in place.
rule real_download:
    input:
        fetch_inputs,
    output:
        touch(f"{RAW}/{{part}}.fetched"),
    wildcard_constraints:
        part="|".join(RAW_PARTS_ALL),
    params:
        settings=lambda w: as_json(config["data"].get("real", {})),
        source=lambda w: {"ssl4eo_s12": "ssl4eo"}.get(w.part, w.part),
        raw=lambda w, output: os.path.dirname(output[0]),
    conda:
        CONDA_ENV
    log:
        f"{LOGS}/real_download/{{part}}.log",
    benchmark:
        f"{BENCH}/real_download/{{part}}.tsv"
    resources:
        mem_mb=4000,
        runtime=24 * 60,
    shell:
        "cromss data fetch {params.source} --settings {params.settings:q} --out {params.raw:q}"
        " > {log:q} 2>&1"


rule store_init:
    input:
        raw_inputs,
    output:
        ingest_flag("init"),
    params:
        **INGEST_PARAMS,
        partitions=lambda w: ingest_partitions(w.store),
    conda:
        CONDA_ENV
    log:
        f"{LOGS}/store/{{store}}.init.log",
    benchmark:
        f"{BENCH}/store/{{store}}.init.tsv"
    resources:
        mem_mb=2000,
        runtime=30,
    shell:
        f"{INGEST} --step init --partitions {{params.partitions}} > {{log:q}} 2>&1 "
        "&& touch {output:q}"


rule store_partition:
    input:
        raw_inputs,
        f"{STORE_DIR}/.{{store}}.zarr.parts/init.flag",
    output:
        ingest_flag("part{part}"),
    wildcard_constraints:
        part=r"\d+",
    params:
        **INGEST_PARAMS,
    conda:
        CONDA_ENV
    log:
        f"{LOGS}/store/{{store}}.part{{part}}.log",
    benchmark:
        f"{BENCH}/store/{{store}}.part{{part}}.tsv"
    threads: 2
    resources:
        mem_mb=8000,
        runtime=12 * 60,
    shell:
        f"{INGEST} --step {{wildcards.part}} --workers {{threads}} > {{log:q}} 2>&1 "
        "&& touch {output:q}"


rule store:
    input:
        store_inputs,
    output:
        directory(store("{store}")),
    params:
        **INGEST_PARAMS,
        step=lambda w: "all" if ingest_partitions(w.store) == 1 else "publish",
    conda:
        CONDA_ENV
    log:
        f"{LOGS}/store/{{store}}.log",
    benchmark:
        f"{BENCH}/store/{{store}}.tsv"
    threads: lambda w: 2 if ingest_partitions(w.store) == 1 else 1
    resources:
        mem_mb=8000,
        runtime=lambda w: 12 * 60 if ingest_partitions(w.store) == 1 else 60,
    shell:
        f"{INGEST} --step {{params.step}} --workers {{threads}} > {{log:q}} 2>&1"


rule quicklook:
    input:
        store("{store}"),
    output:
        png=report(f"{RESULTS}/quicklooks/{{store}}.png", category="Data",
                   caption="../report/quicklook.rst", labels={"store": "{store}"}),
        summary=f"{RESULTS}/quicklooks/{{store}}.txt",
    conda:
        CONDA_ENV
    log:
        f"{LOGS}/quicklook/{{store}}.log",
    benchmark:
        f"{BENCH}/quicklook/{{store}}.tsv"
    resources:
        mem_mb=2000,
        runtime=10,
    shell:
        "cromss data inspect {input:q} --png {output.png:q} > {output.summary:q} 2> {log:q}"


rule data:
    input:
        expand(store("{store}"), store=STORES),
        expand(f"{RESULTS}/quicklooks/{{store}}.png", store=STORES),
