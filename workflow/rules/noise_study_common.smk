# Levels, variants and paths of the label-noise study (workflow/rules/noise_study.smk), derived
# from the config's `noise_study` (defaults: the schema).

NOISE = config["noise_study"]
NOISE_ROOT = f"{RESULTS}/noise_study"
NOISE_DIR = f"{NOISE_ROOT}/noise{{level}}"
NOISE_LEVELS = [f"{float(level):g}" for level in NOISE["levels"]]
NOISE_RUN = f"{NOISE_DIR}/finetune/{{variant}}/{NOISE['setting']}/seed{{seed}}"


def noise_variants():
    """The study's variants, checked when the study is asked for (not when the config loads:
    the default names need not exist in every config)."""
    if SOURCE != "synthetic":
        raise ValueError("noise_study needs data.source: synthetic (the noise of a synthetic "
                         f"world, and its truth for the selection precision), not {SOURCE!r}")
    unknown = [v for v in NOISE["variants"] if v not in VARIANTS]
    if unknown:
        raise ValueError(f"noise_study.variants: {', '.join(unknown)} not in pretrain.variants "
                         f"({', '.join(VARIANTS) or 'none'})")
    lacking = [v for v in NOISE["variants"] if NOISE["modality"] not in variant_modalities(v)]
    if lacking:
        raise ValueError(f"noise_study.variants: {', '.join(lacking)} train no "
                         f"{NOISE['modality']} encoder (noise_study.modality)")
    return list(NOISE["variants"])


def noise_arm_args(wildcards, input):
    """``--arm LEVEL VARIANT LOG METRICS...`` of every level and variant."""
    arms = []
    for level in NOISE_LEVELS:
        for variant in noise_variants():
            log = f"{NOISE_DIR}/pretrain/{variant}/log.jsonl".format(level=level)
            metrics = [f"{NOISE_RUN}/metrics.json".format(level=level, variant=variant, seed=s)
                       for s in FT["seeds"]]
            arms.append(" ".join(shlex.quote(str(a)) for a in [level, variant, log, *metrics]))
    return " ".join(f"--arm {arm}" for arm in arms)
