"""Commands of the training stages: ``cromss pretrain run`` and ``cromss finetune run | group |
evaluate | best``."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from cromss.parser import Groups

from cromss.errors import CromssError


def _threads(value: int | None) -> None:
    """Use the job's threads for torch (Snakemake passes ``{threads}``)."""
    import torch

    if value:
        torch.set_num_threads(value)


def _pretrain(args: argparse.Namespace) -> int:
    from cromss.config import load_settings
    from cromss.settings import Pretrain, build
    from cromss.training.pretrain import pretrain

    _threads(args.threads)
    settings = build(Pretrain, load_settings(args.settings, "pretrain"))
    pretrain(args.store, settings, args.out)
    if args.export_encoders and int(os.environ.get("RANK", "0")) == 0:  # once under torchrun
        from cromss.training.pretrain import MODEL
        from cromss.weights.by_reference import refer_to_encoders
        from cromss.weights.trained import export_encoder

        exported = {modality: export_encoder(args.out / MODEL, modality,
                                             args.out / f"encoder_{modality}.pt")
                    for modality in settings.modalities}
        refer_to_encoders(args.out / MODEL, exported)  # model.pt keeps no second copy of them
    return 0


def _finetune(args: argparse.Namespace) -> int:
    from cromss.config import load_settings
    from cromss.settings import Finetune, build
    from cromss.training.finetune import finetune

    _threads(args.threads)
    finetune(task=args.task, modality=args.modality, encoder=args.encoder, setting=args.setting,
             seed=args.seed, train=args.train,
             settings=build(Finetune, load_settings(args.settings, "finetune")),
             out=args.out, weights_name=args.weights_name)
    if args.test:
        from cromss.training.finetune import evaluate

        evaluate(args.out / "model.pt", args.test, args.metrics or args.out / "metrics.json")
    return 0


def _finetune_group(args: argparse.Namespace) -> int:
    from cromss.config import load_settings
    from cromss.settings import Finetune, build
    from cromss.training.runs import finetune_group

    _threads(args.threads)
    finetune_group(task=args.task, modality=args.modality, encoder=args.encoder,
                   setting=args.setting, seed=args.seed, train=args.train, test=args.test,
                   settings=build(Finetune, load_settings(args.settings, "finetune")),
                   out=args.out,
                   weights_name=args.weights_name)
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from cromss.training.finetune import evaluate

    if len(args.model) != len(args.out):
        raise CromssError(f"{len(args.model)} models but {len(args.out)} output files")
    _threads(args.threads)
    for model, out in zip(args.model, args.out):
        evaluate(model, args.test, out)
    return 0


def _best(args: argparse.Namespace) -> int:
    from cromss.training.best import save_best

    save_best(args.metrics, args.out, args.choice)
    return 0


def register(groups: Groups) -> None:
    """Add ``cromss pretrain run`` and ``cromss finetune run | group | evaluate | best``."""
    from cromss.constants import TASKS

    p = groups["pretrain"].add_parser("run", help="pretrain one CromSS variant on a store")
    p.add_argument("--store", type=Path, required=True, help="pretraining Zarr store")
    p.add_argument("--settings", required=True, help="variant settings (JSON or file)")
    p.add_argument("--out", type=Path, required=True, help="output directory of the variant")
    p.add_argument("--threads", type=int, help="torch threads (default: torch's choice)")
    p.add_argument("--export-encoders", action="store_true", help="also write each modality's "
                   "encoder to OUT/encoder_{s1,s2}.pt (as `cromss weights export` does); "
                   "OUT/model.pt then refers to them instead of holding their weights")
    p.set_defaults(func=_pretrain)

    p = groups["finetune"].add_parser("run", help="transfer an encoder to a downstream task")
    p.add_argument("--task", choices=sorted(TASKS), required=True, help="downstream task")
    p.add_argument("--modality", choices=("s1", "s2"), required=True, help="input modality")
    p.add_argument("--encoder", required=True, help="encoder file or 'random'")
    p.add_argument("--setting", choices=("frozen", "finetuned"), required=True,
                   help="frozen encoder (decoder only) or the whole network fine-tuned")
    p.add_argument("--seed", type=int, required=True, help="seed of the decoder init and batches")
    p.add_argument("--train", type=Path, required=True, help="training Zarr store of the task")
    p.add_argument("--settings", required=True, help="finetune settings (JSON or file)")
    p.add_argument("--out", type=Path, required=True, help="writes OUT/model.pt, OUT/log.jsonl")
    p.add_argument("--weights-name", help="name of the encoder weights in the outputs "
                   "(default: the card's variant, 'random', 'released' or the file name)")
    p.add_argument("--test", type=Path, help="also evaluate on this test store (saves a process "
                   "start; same result as `cromss finetune evaluate`)")
    p.add_argument("--metrics", type=Path, help="metrics file of --test (default OUT/metrics.json)")
    p.add_argument("--threads", type=int, help="torch threads (default: torch's choice)")
    p.set_defaults(func=_finetune)

    p = groups["finetune"].add_parser("group", help="all settings and seeds of one task, "
                                      "modality and encoder in one process, each run evaluated "
                                      "as it completes")
    p.add_argument("--task", choices=sorted(TASKS), required=True, help="downstream task")
    p.add_argument("--modality", choices=("s1", "s2"), required=True, help="input modality")
    p.add_argument("--encoder", required=True, help="encoder file or 'random'")
    p.add_argument("--setting", choices=("frozen", "finetuned"), nargs="+", required=True,
                   help="encoder settings to run, one run per setting and seed")
    p.add_argument("--seed", type=int, nargs="+", required=True, help="seeds to run")
    p.add_argument("--train", type=Path, required=True, help="training Zarr store of the task")
    p.add_argument("--test", type=Path, required=True, help="test Zarr store of the task")
    p.add_argument("--settings", required=True, help="finetune settings (JSON or file)")
    p.add_argument("--out", required=True, help="run directory with {setting} and {seed}, e.g. "
                   "results/finetune/dw/s2/midF/{setting}/seed{seed}: model.pt, log.jsonl, "
                   "metrics.json in each")
    p.add_argument("--weights-name", help="name of the encoder weights in the outputs")
    p.add_argument("--threads", type=int, help="torch threads (default: torch's choice)")
    p.set_defaults(func=_finetune_group)

    p = groups["finetune"].add_parser("evaluate", help="score fine-tuned models on a test store "
                                      "(one process for several models, e.g. the seeds of a run)")
    p.add_argument("--model", type=Path, nargs="+", required=True,
                   help="model.pt files from `cromss finetune run`")
    p.add_argument("--test", type=Path, required=True, help="test Zarr store of the task")
    p.add_argument("--out", type=Path, nargs="+", required=True,
                   help="one metrics JSON file per model, in the same order")
    p.add_argument("--threads", type=int, help="torch threads (default: torch's choice)")
    p.set_defaults(func=_evaluate)

    p = groups["finetune"].add_parser("best", help="copy the model of the run with the highest "
                                      "test mIoU, and say which run it is")
    p.add_argument("--metrics", type=Path, nargs="+", required=True,
                   help="metrics.json of the candidate runs (each beside its model.pt)")
    p.add_argument("--out", type=Path, required=True, help="the best run's model, copied here")
    p.add_argument("--choice", type=Path, required=True,
                   help="JSON: the chosen run, its mIoU and the candidates")
    p.set_defaults(func=_best)
