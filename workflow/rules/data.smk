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
        "cromss data synth --settings {params.settings:q} --out {output} > {log} 2>&1"


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
        "cromss fetch {params.source} --settings {params.settings:q} --out {params.raw} > {log} 2>&1"


rule store:
    input:
        raw_inputs,
    output:
        directory(store("{store}")),
    params:
        raw=RAW,
        trees=lambda w: local_tree_args(),
    conda:
        CONDA_ENV
    log:
        f"{LOGS}/store/{{store}}.log",
    benchmark:
        f"{BENCH}/store/{{store}}.tsv"
    threads: 2
    resources:
        mem_mb=8000,
        runtime=12 * 60,
    shell:
        "cromss data ingest {wildcards.store} --raw {params.raw} {params.trees} --out {output} "
        "--workers {threads} > {log} 2>&1"


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
        "cromss data inspect {input} --png {output.png} > {output.summary} 2> {log}"


rule data:
    input:
        expand(store("{store}"), store=STORES),
        expand(f"{RESULTS}/quicklooks/{{store}}.png", store=STORES),
