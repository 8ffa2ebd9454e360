# Maps of whole scenes: `cromss map predict` (tiled, blended inference) on the scenes of the config.


rule synthetic_scene:
    output:
        directory(f"{SCENE_DIR}/{{scene}}"),
    params:
        settings=lambda w: as_json(MAP_SCENES[w.scene]["synthetic"]),
    conda:
        CONDA_ENV
    log:
        f"{LOGS}/maps/scene_{{scene}}.log",
    benchmark:
        f"{BENCH}/maps/scene_{{scene}}.tsv"
    resources:
        mem_mb=4000,
        runtime=20,
    shell:
        "cromss data scene --settings {params.settings:q} --out {output:q} > {log:q} 2>&1"


rule scene_map:
    input:
        model=lambda w: map_model(w.model),
        scene=lambda w: scene_inputs(w.scene),
    output:
        map=f"{MAP_DIR}/{{model}}.tif",
        confidence=f"{MAP_DIR}/{{model}}_confidence.tif",
    params:
        tiling=lambda w: (f"--tile {MAPS.get('tile', 256)} --overlap {MAPS.get('overlap', 64)}"
                          f" --batch-size {MAPS.get('batch_size', 8)}"),
    threads: 2
    resources:
        mem_mb=4000,
        runtime=60,
        gpu=min(GPUS, 1),
    conda:
        CONDA_ENV
    log:
        f"{LOGS}/maps/{{scene}}_{{model}}.log",
    benchmark:
        f"{BENCH}/maps/{{scene}}_{{model}}.tsv"
    shell:
        "cromss map predict --model {input.model:q} --scene {input.scene:q}"
        " --out {output.map:q} --confidence {output.confidence:q} {params.tiling}"
        " --threads {threads} > {log:q} 2>&1"


rule map_figure:
    input:
        map=f"{MAP_DIR}/{{model}}.tif",
        confidence=f"{MAP_DIR}/{{model}}_confidence.tif",
        scene=lambda w: scene_inputs(w.scene),
    output:
        report(f"{MAP_DIR}/{{model}}.png", category="Maps", subcategory="{scene}",
               caption="../report/map.rst"),
    params:
        truth=map_truth,
    conda:
        CONDA_ENV
    log:
        f"{LOGS}/maps/{{scene}}_{{model}}_figure.log",
    benchmark:
        f"{BENCH}/maps/{{scene}}_{{model}}_figure.tsv"
    resources:
        mem_mb=2000,
        runtime=5,
    shell:
        "cromss map figure --map {input.map:q} --scene {input.scene:q} {params.truth}"
        " --out {output:q} > {log:q} 2>&1"
