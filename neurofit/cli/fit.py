"""``neurofit fit`` and ``neurofit evaluate``."""

from __future__ import annotations

import argparse

from neurofit.errors import ConfigError


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``fit`` and ``evaluate``."""
    fit = sub.add_parser("fit", help="train a model from a config on a store")
    fit.add_argument("--data", required=True, help="zarr store (from simulate or convert)")
    fit.add_argument("--config", required=True, help="experiment config, e.g. configs/default.yaml")
    fit.add_argument("--out", required=True, help="run directory to create (or continue with --resume)")
    fit.add_argument("--seed", type=int, default=0)
    fit.add_argument("--max-epochs", type=int, default=None,
                     help="override training.max_epochs (with --resume: train a finished run further)")
    fit.add_argument("--accelerator", default="auto", help="cpu, gpu or auto")
    fit.add_argument("--devices", default="auto",
                     help="processes per node (GPUs, or CPU processes), or auto (1 CPU process, every visible "
                          "GPU, or what torchrun/srun started per node)")
    fit.add_argument("--num-nodes", type=int, default=1, help="nodes; more than one needs torchrun or srun")
    fit.add_argument("--strategy", default="auto", help="auto or ddp (more than one process trains with DDP)")
    fit.add_argument("--logger", default="csv", choices=["csv", "wandb"],
                     help="csv always; wandb adds an offline wandb run")
    fit.add_argument("--resume", action="store_true", help="continue from RUN/checkpoints/last.ckpt")
    fit.add_argument("--init-from", default=None, metavar="RUN",
                     help="start the core from this fitted run's best checkpoint (training.init_from); readouts "
                          "for the new recordings start fresh")
    fit.add_argument("--freeze", default=None, metavar="core|none",
                     help="with --init-from: core trains only the per-recording parts, none fine-tunes everything "
                          "(training.freeze [none]; training.core_lr_scale scales the core's learning rate)")
    fit.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                     help="override a config value, e.g. --set training.lr=0.003 (repeatable)")
    fit.add_argument("--evaluate", action="store_true", help="evaluate on the test tier after fitting")
    fit.add_argument("--threads", type=int, default=None,
                     help="CPU threads for torch (default: torch's choice); 1 per process on a shared machine")
    fit.set_defaults(handler=_fit)

    ev = sub.add_parser("evaluate", help="score a run on a held-out tier; writes RUN/metrics.json")
    ev.add_argument("run", help="run directory")
    ev.add_argument("--data", default=None, help="store to evaluate on (default: the one it was fit on)")
    ev.add_argument("--tier", default="test")
    ev.add_argument("--no-figures", action="store_true")
    ev.set_defaults(handler=_evaluate)


def set_threads(threads: int | None) -> None:
    """``--threads``: torch's intra-op CPU threads (``ConfigError`` for a count below 1)."""
    if threads is None:
        return
    if threads < 1:
        raise ConfigError(f"--threads {threads}: must be >= 1")
    import torch

    torch.set_num_threads(threads)


def _devices(value: str) -> int | str:
    return int(value) if value.isdigit() else value


def _fit(args: argparse.Namespace) -> int:
    from neurofit.training.fit import fit

    set_threads(args.threads)

    out = fit(args.data, args.config, args.out, seed=args.seed, max_epochs=args.max_epochs,
              accelerator=args.accelerator, devices=_devices(args.devices), num_nodes=args.num_nodes,
              strategy=args.strategy, logger=args.logger, resume=args.resume, overrides=args.overrides,
              init_from=args.init_from, freeze=args.freeze)
    print(f"fitted {out}")
    if args.evaluate:
        return print_evaluation(str(out), None, "test", figures=True)
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    return print_evaluation(args.run, args.data, args.tier, figures=not args.no_figures)


def print_evaluation(run: str, data: str | None, tier: str, figures: bool) -> int:
    """Evaluate ``run`` and print the metrics table (the shared tail of fit --evaluate and evaluate)."""
    from neurofit.evaluation import evaluate, format_table

    metrics = evaluate(run, data, tier, figures=figures)
    print(format_table(metrics))
    print(f"wrote {run}/metrics.json")
    return 0
