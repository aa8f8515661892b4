"""``neurofit fit``: train a model from a config on a store into a run directory.

Run directory layout: ``config.yaml`` (resolved, with data path and seed), ``specs.json``,
``checkpoints/{best,last}.ckpt`` (encoders) or ``model.npz`` (ridge), ``logs/metrics.csv``,
``train_info.json`` (parameters, wall time, epochs, best validation correlation)."""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path

import lightning as L
import numpy as np

from neurofit.config import ExperimentConfig, Given, experiment_from_data, load_config, save_config
from neurofit.data.datamodule import NeuralDataModule
from neurofit.errors import ConfigError, DataError, TrainingError
from neurofit.io import write_json
from neurofit.rundir import RunDir
from neurofit.training.callbacks import AtomicCheckpointIO, save_init_checkpoint
from neurofit.training.launch import Launch, resolve_launch
from neurofit.training.log_history import logged_rows, restore_rows

log = logging.getLogger(__name__)
#: The one config value a resumed run may change (``--max-epochs``).
RESUMABLE = "training.max_epochs"


def is_launcher_rank() -> bool:
    """True in the process that owns the run dir: rank 0 under Lightning's launcher (LOCAL_RANK/NODE_RANK),
    torchrun (RANK) and SLURM (SLURM_PROCID), or a plain single process. Other ranks re-run ``fit`` and must
    neither refuse the existing run dir nor write to it."""
    return all(os.environ.get(var, "0") == "0" for var in ("RANK", "LOCAL_RANK", "NODE_RANK", "SLURM_PROCID"))


def _loggers(out: Path, kind: str, cfg: ExperimentConfig) -> list:
    from lightning.pytorch.loggers import CSVLogger

    loggers: list = [CSVLogger(str(out), name="logs", version="")]
    if kind == "wandb":
        try:
            import wandb  # noqa: F401
            from lightning.pytorch.loggers import WandbLogger
        except ImportError:
            raise ConfigError("--logger wandb needs wandb: pip install 'neurofit[wandb]'") from None
        os.environ.setdefault("WANDB_MODE", "offline")
        loggers.append(WandbLogger(project="neurofit", name=cfg.name, save_dir=str(out), offline=True))
    elif kind != "csv":
        raise ConfigError(f"--logger: unknown logger {kind!r} (choose csv or wandb)")
    return loggers


def fit(data: str | os.PathLike, config: str | os.PathLike, out: str | os.PathLike, *, seed: int = 0,
        max_epochs: int | None = None, accelerator: str = "auto", devices: int | str = "auto",
        num_nodes: int = 1, strategy: str = "auto", logger: str = "csv", resume: bool = False,
        overrides: list[str] | None = None, progress: bool = True, init_from: str | os.PathLike | None = None,
        freeze: str | None = None) -> Path:
    """Train the config's model on ``data`` into run dir ``out``; returns ``out``.

    ``init_from`` (a fitted encoder run) and ``freeze`` ("core" or "none") set ``training.init_from`` and
    ``training.freeze``: the core starts from that run's best checkpoint (``neurofit.training.transfer``).

    ``resume`` continues an interrupted run from ``checkpoints/last.ckpt`` with its saved config (``overrides``
    must agree with it); a ``max_epochs`` given with it replaces the saved epoch budget, so a finished run can
    be trained further. The config, the data, the model and (when resuming) the checkpoint are all checked
    before anything is written; see ``neurofit.rundir`` for the refuse-or-resume rules."""
    out = Path(out)
    run = RunDir(out)
    owner = is_launcher_rank()
    replace_early = run.check_new(resume) if owner else False
    last = run.file("checkpoints/last.ckpt")
    ckpt = last if resume and last.exists() else None
    cfg = _run_config(run, config, data, seed, resume, overrides, init_from, freeze)
    if ckpt is not None and owner:  # a damaged checkpoint is reported before config.yaml is rewritten
        _check_matches(run, cfg, run.read_checkpoint("last"))
    if max_epochs is not None:
        if max_epochs < 1:
            raise ConfigError(f"--max-epochs {max_epochs}: must be >= 1")
        cfg.training.max_epochs = max_epochs
    # Checked in every process before anything is written, so a layout that cannot run stops them all alike.
    launch = resolve_launch(accelerator, devices, num_nodes, strategy, cfg.training)
    seed = cfg.training.seed
    L.seed_everything(seed, workers=True, verbose=False)
    dm = NeuralDataModule.from_config(cfg.data, seed)
    specs = [s.to_dict() for s in dm.prepare_specs()]
    model = _build_model(cfg, specs)
    # A resumed run's core is in its own checkpoint; RUN may even be gone by then.
    transfer = None
    if cfg.training.init_from is not None and ckpt is None:
        from neurofit.training.transfer import transfer_core

        transfer = transfer_core(model.encoder, cfg, dm.prepare_specs())
    if owner:
        run.start(replace_early)
        save_config(cfg, run.file("config.yaml"))
        write_json(run.file("specs.json"), specs)
    start = time.time()
    earlier = _earlier_info(out) if ckpt is not None else {}
    if cfg.type == "ridge":
        info = _fit_ridge(model, dm, out)
    else:
        info = _fit_encoder(model, cfg, dm, specs, out, ckpt, launch, logger, progress)
    if info is not None and owner:
        info.update(seed=seed, wall_s=earlier.get("wall_s", 0.0) + time.time() - start, config=cfg.name)
        if cfg.training.init_from is not None:  # a resumed session keeps the record of the session that copied
            info["init_from"] = transfer or earlier.get("init_from") or _transfer_settings(cfg)
        write_json(run.file("train_info.json"), info)
    return out


def _run_config(run: RunDir, config: str | os.PathLike, data: str | os.PathLike, seed: int, resume: bool,
                overrides: list[str] | None, init_from: str | os.PathLike | None,
                freeze: str | None) -> ExperimentConfig:
    """The config to train with: the run's saved one when resuming (command-line settings must agree with
    it), else ``config`` with ``overrides``, the seed, the data path and the transfer settings."""
    options = {"training.seed": seed, "data.path": str(Path(data).resolve())}
    if init_from is not None:  # the record names the run wherever the fit was started from
        options["training.init_from"] = Given(str(Path(init_from).resolve()), f"--init-from {init_from}")
    if freeze is not None:
        options["training.freeze"] = Given(freeze, f"--freeze {freeze}")
    saved = run.file("config.yaml")
    resuming = resume and saved.exists()
    if resuming and not overrides and init_from is None and freeze is None:
        return load_config(saved)
    fresh = load_config(config, overrides, options)
    if fresh.training.init_from is not None:  # a config file's relative path, too
        fresh.training.init_from = str(Path(fresh.training.init_from).resolve())
    if not resuming:
        return fresh
    cfg = load_config(saved)
    given = [f"--set {t}" for t in overrides or []] + [o.text for o in options.values() if isinstance(o, Given)]
    if fresh.identity(RESUMABLE) != cfg.identity(RESUMABLE):
        raise ConfigError(f"{saved}: {' '.join(given)} differs from the config of the run being resumed (a "
                          "resumed run keeps its config; only --max-epochs may change)")
    return cfg


def _check_matches(run: RunDir, cfg: ExperimentConfig, checkpoint: dict) -> None:
    """The saved config is the one the checkpoint was trained with (a damaged or edited config.yaml would
    otherwise build a different model and fail deep inside the restore)."""
    try:
        trained = experiment_from_data(checkpoint["hyper_parameters"]["config"], "checkpoint")
    except (ConfigError, KeyError, TypeError) as err:
        raise DataError(f"{run.file('checkpoints/last.ckpt')}: holds no usable config ({err})") from None
    if trained.identity(RESUMABLE) != cfg.identity(RESUMABLE):
        raise DataError(f"{run.file('config.yaml')}: differs from the config in checkpoints/last.ckpt (edited or "
                        "damaged?); restore it, or fit a new run")


def _earlier_info(out: Path) -> dict:
    """``train_info.json`` of the sessions before a resumed one (their fit time, where the core came from),
    when a finished session wrote it (an interrupted session writes none)."""
    path = out / "train_info.json"
    return json.loads(path.read_text()) if path.exists() else {}


def _transfer_settings(cfg: ExperimentConfig) -> dict:
    """Where the core came from, as far as the config says (a resumed run whose first session was
    interrupted before it wrote ``train_info.json``)."""
    tcfg = cfg.training
    return {"run": tcfg.init_from, "freeze": tcfg.freeze, "core_lr_scale": tcfg.core_lr_scale}


def _build_model(cfg: ExperimentConfig, specs: list[dict]):
    """The config's model (an EncoderModule, or a RidgePredictor), built before anything is written so a
    config naming an unknown component fails cleanly."""
    if cfg.type == "ridge":
        from neurofit.models.ridge import RidgePredictor

        return RidgePredictor(**cfg.model.options)
    from neurofit.training.module import EncoderModule

    return EncoderModule(cfg, specs)


def _fit_ridge(model, dm: NeuralDataModule, out: Path) -> dict:
    n_params = 0
    for name, arrays in dm.recordings.items():
        train = np.concatenate([arrays.trials("train"), arrays.trials("validation")])
        batch = arrays.read(train)
        model.fit_recording(name, batch["stimulus"], batch["responses"])
        n_params += model.params[name]["coef"].size + model.params[name]["intercept"].size
    model.save(out / "model.npz")
    return {"n_parameters": int(n_params), "epochs": 0, "best_val_correlation": None}


def _fit_encoder(module, cfg: ExperimentConfig, dm: NeuralDataModule, specs: list[dict], out: Path,
                 ckpt: Path | None, launch: Launch, logger: str, progress: bool) -> dict | None:
    from lightning.pytorch.callbacks import EarlyStopping, LearningRateMonitor, ModelCheckpoint

    from neurofit.training.speedups import apply_speedups
    from neurofit.training.sync_batchnorm import GlobalBatchNormSync

    tcfg = cfg.training
    checkpoint = ModelCheckpoint(dirpath=str(out / "checkpoints"), filename="best", monitor="val/correlation",
                                 mode="max", save_top_k=1, enable_version_counter=False)
    # "last" has its own callback without a monitor: with save_last on a monitored callback, Lightning only
    # rewrites last.ckpt when the monitored value improves, and --resume would restart from a stale epoch.
    last = ModelCheckpoint(dirpath=str(out / "checkpoints"), filename="last", save_top_k=1,
                           enable_version_counter=False)
    callbacks = [checkpoint, last, LearningRateMonitor(logging_interval="epoch"),
                 EarlyStopping(monitor="val/correlation", mode="max", patience=tcfg.patience,
                               min_delta=tcfg.min_delta)]
    plugins: list = [AtomicCheckpointIO()]
    if launch.world_size > 1 and tcfg.sync_batchnorm:
        plugins.append(GlobalBatchNormSync())
    loggers = _loggers(out, logger, cfg)
    if ckpt is not None:  # Lightning's CSV writer would start metrics.csv afresh
        restore_rows(loggers[0], *logged_rows(out / "logs" / "metrics.csv", ckpt))
    trainer = L.Trainer(
        max_epochs=tcfg.max_epochs, max_time=tcfg.max_time, val_check_interval=tcfg.val_check_interval,
        accelerator=launch.accelerator, devices=launch.devices, num_nodes=launch.num_nodes,
        strategy=launch.strategy(len(specs)), precision=tcfg.precision, logger=loggers, callbacks=callbacks,
        default_root_dir=str(out), gradient_clip_val=tcfg.gradient_clip_val, deterministic=tcfg.deterministic,
        use_distributed_sampler=False, enable_progress_bar=progress, enable_model_summary=False,
        plugins=plugins, log_every_n_steps=tcfg.log_every_n_steps,
        num_sanity_val_steps=0)
    if ckpt is None:  # a resumed run takes its positions from the checkpoint
        from neurofit.training.readout_init import init_readouts

        mapped_at = time.time()
        started = init_readouts(module.encoder, dm.recordings, trained_core=cfg.training.init_from is not None)
        strengths = [v["strength"] for v in started.values() if "strength" in v]
        penalties = [v["penalty"] for v in started.values() if "penalty" in v]
        if strengths and is_launcher_rank():
            log.info("readout positions start at RF centres mapped from the training data of %d recording(s) "
                     "in %.1f s (median response-energy correlation %.2f)", len(strengths),
                     time.time() - mapped_at, np.median(strengths))
        if penalties and is_launcher_rank():
            log.info("readout feature weights start at the ridge regression on the transferred core's features "
                     "for %d recording(s) (median penalty %.2g x the mean feature-covariance eigenvalue)",
                     len(penalties), np.median(penalties))
        module.restart_average()
        if is_launcher_rank():
            save_init_checkpoint(module, out / "checkpoints" / "init.ckpt")
    apply_speedups(module.encoder.core, tcfg)
    try:
        trainer.fit(module, datamodule=dm, ckpt_path=str(ckpt) if ckpt else None)
    except SystemExit:
        # Lightning turns Ctrl-C into a graceful shutdown and sys.exit(1); report it as the interrupt it was.
        if trainer.interrupted:
            raise KeyboardInterrupt from None
        raise
    except TrainingError as err:
        last_ckpt = out / "checkpoints" / "last.ckpt"
        kept = (f"the last good checkpoint {last_ckpt} is kept (--resume continues from it)"
                if last_ckpt.exists() else "no checkpoint was written yet")
        raise TrainingError(f"{out}: {err}; {kept}") from None
    if not trainer.is_global_zero:
        return None
    best = checkpoint.best_model_score
    return {"n_parameters": int(sum(p.numel() for p in module.encoder.parameters())),  # not the EMA copy
            "epochs": int(trainer.current_epoch),
            "best_val_correlation": None if best is None else float(best),
            "world_size": int(trainer.world_size)}
