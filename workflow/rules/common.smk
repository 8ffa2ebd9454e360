# Paths, the experiment matrix and the settings each job depends on, all derived from the config.
import os
import shlex

from cromss.config import FINETUNE_MATRIX, settings_param, variant_settings
from cromss.weights.publish import PUBLISHED
from cromss.weights.released import RELEASES

CONDA_ENV = "../../environment.yml"  # used with --software-deployment-method conda
# environment.post-deploy.sh installs the package from here into that env (README "Conda")
os.environ.setdefault("CROMSS_SOURCE", os.path.abspath(workflow.basedir))
RESULTS = "results"
LOGS = f"{RESULTS}/logs"
BENCH = f"{RESULTS}/benchmarks"
SOURCE = config["data"]["source"]
RAW = f"{config['data']['raw_dir']}/{SOURCE}"
STORE_DIR = config["data"]["store_dir"]
STORES = ["nol", "dw_train", "dw_test", "osm_train", "osm_test", "dfc2020_train", "dfc2020_test"]
TASK_TABLE = {"dfc2020": 1, "dw": 2, "osm": 3}
VARIANTS = list(config["pretrain"]["variants"])
FT = config["finetune"]
# one fine-tuning run; one job trains and evaluates all runs of a (task, modality, weights) group
FT_DIR = f"{RESULTS}/finetune/{{task}}/{{modality}}/{{weights}}/{{setting}}/seed{{seed}}"
GPUS = config.get("resources", {}).get("gpus_per_training_job", 0)
UNKNOWN_WEIGHTS = sorted(set(FT["weights"]) - {"random", *VARIANTS, *RELEASES})
if UNKNOWN_WEIGHTS:
    raise ValueError(f"finetune.weights: {', '.join(UNKNOWN_WEIGHTS)} is neither 'random', a "
                     f"pretrain variant ({', '.join(VARIANTS) or 'none'}) nor a release "
                     f"({', '.join(RELEASES)})")
# DDP processes of one pretraining job per node: one per GPU, else the configured CPU (gloo) ones
TRAINING_PROCESSES = GPUS or config.get("resources", {}).get("processes_per_training_job", 1)
# nodes of one pretraining job (above 1: srun + torchrun with a c10d rendezvous, SLURM only)
NODES = config.get("resources", {}).get("nodes_per_training_job", 1)
# DataLoader workers of each pretraining process (one process per GPU)
LOADER_WORKERS = config["pretrain"].get("num_workers", 0)

wildcard_constraints:
    store="|".join(STORES),
    task="|".join(TASK_TABLE),
    modality="s1|s2",
    setting="frozen|finetuned",
    seed=r"\d+",
    variant="|".join(VARIANTS),
    weights="|".join(["random", *VARIANTS, *RELEASES]),


def as_json(value):
    """A config section as one line of flow-style YAML (JSON-compatible types) for ``params:``:
    a change reruns the job, and the report shows it readably (cromss.config.settings_param)."""
    return settings_param(value)


def store(name):
    """Path of one Zarr store."""
    return f"{STORE_DIR}/{name}.zarr"


def variant_modalities(variant):
    if variant in RELEASES:  # released two-modality checkpoints (release.smk)
        return ["s1", "s2"]
    fusion = config["pretrain"]["variants"][variant]["fusion"]
    return {"single_s1": ["s1"], "single_s2": ["s2"]}.get(fusion, ["s1", "s2"])


def variants_with(modalities):
    """Regex of the variants that train exactly these modalities."""
    return "|".join(v for v in VARIANTS if variant_modalities(v) == modalities) or "(?!)"


def pretrain_settings(variant):
    return variant_settings(config["pretrain"], variant)


def finetune_settings():
    """The fine-tuning settings a job reads (not the matrix lists), with the encoder architecture
    of the random-init baseline."""
    settings = {k: v for k, v in FT.items() if k not in FINETUNE_MATRIX}
    return {**settings, "encoder": config["pretrain"]["encoder"]}


def encoder_file(weights, modality):
    return f"{RESULTS}/pretrain/{weights}/encoder_{modality}.pt"


def published_files(weights, modality):
    """The folder published beside an encoder: safetensors, Hub card, STAC item."""
    return [f"{RESULTS}/pretrain/{weights}/encoder_{modality}/{name}" for name in PUBLISHED]


def best_model_file(task):
    """The copy of the task's best fine-tuned model (highest test mIoU of all its runs)."""
    return f"{RESULTS}/finetune/{task}/best/model.pt"


def predictions_figure(task):
    """Test tiles predicted by one run per weights: made in the transfer stage, from run models
    that are deleted afterwards unless finetune.keep_models."""
    return f"{RESULTS}/finetune/{task}/predictions.png"


def runs(tasks, modalities, weights, settings, seeds):
    """Every fine-tuning run of a matrix whose encoder exists (single-modal variants have one)."""
    out = []
    for task in tasks:
        for modality in modalities:
            for w in weights:
                if w != "random" and modality not in variant_modalities(w):
                    continue
                for setting in settings:
                    for seed in seeds:
                        out.append(dict(task=task, modality=modality, weights=w,
                                        setting=setting, seed=seed))
    return out


def group_outputs(name, settings):
    """One output file of every run (settings x seeds) of a fine-tuning group."""
    return expand(f"{FT_DIR}/{name}", setting=settings, seed=FT["seeds"], allow_missing=True)


def run_models(models):
    """Fine-tuning runs' model files: deleted once the jobs that read them (best model,
    predictions figure) are done, unless finetune.keep_models (metrics and logs are kept)."""
    return models if FT.get("keep_models") else [temp(m) for m in models]


def group_models(settings):
    return run_models(group_outputs("model.pt", settings))


def group_run_dir(wildcards):
    """The run directories of a group, with {setting} and {seed} left for the CLI to fill in."""
    return FT_DIR.format(task=wildcards.task, modality=wildcards.modality,
                         weights=wildcards.weights, setting="{setting}", seed="{seed}")


def metrics_files(run_list):
    return [f"{FT_DIR}/metrics.json".format(**r) for r in run_list]


def table_runs(task):
    return runs([task], FT["modalities"], FT["weights"], FT["settings"], FT["seeds"])


def table_runs_all():
    """Every run of the transfer tables and the ablation, each once."""
    unique = {tuple(r.items()): r for t in FT["tasks"] for r in table_runs(t)}
    unique.update({tuple(r.items()): r for r in ablation_runs()})
    return list(unique.values())


def ablation_runs():
    a = FT["ablation"]
    return runs([a["task"]], [a["modality"]], VARIANTS, [a["setting"]], FT["seeds"])


def ablation_only_weights():
    """Regex of the variants whose ablation runs the main fine-tuning groups do not make."""
    main = [r for t in FT["tasks"] for r in table_runs(t)]
    only = sorted({r["weights"] for r in ablation_runs() if r not in main})
    return "|".join(only) or "(?!)"  # (?!) matches nothing


def prediction_runs(task):
    """One run per weights (last modality and setting, first seed) for the predictions figure."""
    modality, setting, seed = FT["modalities"][-1], FT["settings"][-1], FT["seeds"][0]
    return runs([task], [modality], FT["weights"], [setting], [seed])


def table(number):
    """Path of one result table."""
    return f"{RESULTS}/tables/table{number}.csv"


RAW_PARTS = {"nol": ["noldo", "ssl4eo_s12"], "dw": ["noldo"], "osm": ["noldo"], "dfc2020": ["dfc2020"]}
RAW_PARTS_ALL = ["ssl4eo_s12", "noldo", "dfc2020"]
LOCAL = config["data"].get("real", {}).get("local") or {}


def raw_inputs(wildcards):
    """The raw trees a store is ingested from: a tree of data.real.local as it lies, else the
    flag of its download (never the downloaded tree itself, so Snakemake never removes it)."""
    if SOURCE == "synthetic":
        return [RAW]
    parts = RAW_PARTS[wildcards.store.split("_")[0]]
    return [LOCAL[part] if LOCAL.get(part) else f"{RAW}/{part}.fetched" for part in parts]


def fetch_inputs(wildcards):
    """The SSL4EO-S12 fetch reads the NoL ids of NoLDO (``ancient``: its age never reruns it)."""
    if wildcards.part != "ssl4eo_s12":
        return []
    if LOCAL.get("noldo"):
        return [ancient(LOCAL["noldo"])]
    return [ancient(f"{RAW}/noldo.fetched")]


def local_tree_args():
    """``--noldo PATH ...`` of the trees read in place (real data only)."""
    if SOURCE == "synthetic":
        return ""
    return " ".join(f"--{part.replace('_', '-')} {shlex.quote(str(path))}"
                    for part, path in sorted(LOCAL.items()) if path)


def launcher(wildcards, threads, resources):
    """torchrun with one process per GPU (or per configured CPU process) in the job's one
    allocation, srun + torchrun on each node of a multi-node job, else the plain CLI
    (cromss.training.launch)."""
    from cromss.training.launch import launcher as command

    cpus = resources.get("cpus_per_task") or threads
    return command(NODES, TRAINING_PROCESSES, GPUS, cpus)


def training_resources():
    """The GPUs of a pretraining job; on several nodes, what the SLURM plugin turns into
    ``--nodes=N --ntasks=N`` (one task per node) and ``--gres=gpu:G`` (GPUs per node), with
    ``mpi`` so that its jobstep runs the rule's own ``srun`` instead of wrapping it in one."""
    if NODES == 1:
        return {"gpu": GPUS}
    extra = {"gres": f"gpu:{GPUS}"} if GPUS else {}
    return {"nodes": NODES, "tasks": NODES, "tasks_per_gpu": 0, "mpi": "srun", **extra}


def pretrain_threads():
    """The CPUs of a pretraining job (per node): a core per training process (at least 2,
    which several CPU processes share) and one per DataLoader worker of each."""
    return max(2, TRAINING_PROCESSES) + TRAINING_PROCESSES * LOADER_WORKERS


def pretrain_mem_mb():
    """The memory of a pretraining job (per node): per training process its own and that of
    its DataLoader workers (``resources.memory_mb_per_training_process`` and
    ``memory_mb_per_loader_worker``; benchmarks/README.md measures a worker)."""
    sizes = config.get("resources", {})
    return TRAINING_PROCESSES * (sizes.get("memory_mb_per_training_process", 16000)
                                 + LOADER_WORKERS * sizes.get("memory_mb_per_loader_worker", 2000))


def threads_per_process(wildcards, threads):
    """The job's threads left by the DataLoader workers, shared among its training processes."""
    return max(1, (threads - TRAINING_PROCESSES * LOADER_WORKERS) // TRAINING_PROCESSES)


def encoder_input(wildcards):
    """The pretrained encoder a fine-tuning run starts from (none for random init)."""
    if wildcards.weights == "random":
        return []
    return encoder_file(wildcards.weights, wildcards.modality)


REFERENCE = {1: "reference/paper_table1_dfc2020.csv", 2: "reference/paper_table2_dw.csv",
             3: "reference/paper_table3_osm.csv"}
TASK_OF_TABLE = {number: task for task, number in TASK_TABLE.items()}


ABLATION_ONLY = ablation_only_weights()
# Without pretraining variants (released weights only), nothing that needs pretraining.
TABLES = [table(TASK_TABLE[t]) for t in FT["tasks"]] + [table(4)] * bool(VARIANTS) + [
    f"{RESULTS}/tables/claims.csv", f"{RESULTS}/tables/results_long.csv"]
# The samples figure shows the selection of the first two-modality variant.
SELECTION_VARIANT = next((v for v in VARIANTS if len(variant_modalities(v)) == 2), None)
PRETRAIN_FIGURES = ["pretrain_curves", "selection", "samples"] if VARIANTS else []
FIGURES = [
    *[f"{RESULTS}/figures/{name}.png" for name in PRETRAIN_FIGURES],
    *[f"{RESULTS}/figures/{t}_{name}.png" for t in FT["tasks"]
      for name in ("class_iou", "confusion")],
    *[predictions_figure(t) for t in FT["tasks"]],
    *[f"{RESULTS}/metrics/pretrain_curves.csv", f"{RESULTS}/metrics/plots_page.html"]
    * bool(VARIANTS),
    *[f"{RESULTS}/figures/ablation.png"] * bool(VARIANTS),
    *[f"{RESULTS}/quicklooks/{name}.png" for name in STORES if VARIANTS or name != "nol"],
]


# --- ingest in partitions (data.ingest; cromss.data.partitioned) ---

def ingest_partitions(store_name):
    """The number of ingest jobs of a store (data.ingest.partitions; 1: one ``store`` job)."""
    return config["data"].get("ingest", {}).get("partitions", {}).get(store_name, 1)


def ingest_flag(step):
    """A flag a step of a partitioned ingest leaves beside the store's partial (temp: once the
    store is published, the finished store alone is up to date)."""
    return temp(f"{STORE_DIR}/.{{store}}.zarr.parts/{step}.flag")


INGEST = (
    "cromss data ingest {wildcards.store} --raw {params.raw:q} {params.trees} "
    "--out {params.out:q} --shard-samples {params.shard_samples}"
)
INGEST_PARAMS = dict(
    raw=RAW,
    trees=lambda w: local_tree_args(),
    out=lambda w: store(w.store),
    shard_samples=config["data"].get("ingest", {}).get("shard_samples", 16),
)


def store_inputs(wildcards):
    """One job reads the raw trees; a partitioned store publishes its finished partitions."""
    count = ingest_partitions(wildcards.store)
    if count == 1:
        return raw_inputs(wildcards)
    parts = f"{STORE_DIR}/.{wildcards.store}.zarr.parts"
    return [*raw_inputs(wildcards), *(f"{parts}/part{index}.flag" for index in range(count))]
