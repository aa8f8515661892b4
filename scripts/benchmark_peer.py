"""Side-by-side benchmark against the field's tool: the SENSORIUM 2022 baseline built from neuralpredictors.

The peer is what ``sensorium.models.stacked_core_full_gauss_readout`` builds from neuralpredictors 0.3.0
layers: a ``Stacked2dCore``, one ``FullGaussian2d`` readout per recording whose positions are predicted from
the neurons' cortical x/y by the "cortex" grid-mean predictor, an ``MLPShifter`` fed with the pupil centre, and
the behaviour appended to the image as constant input channels (SENSORIUM+ track), wrapped in neuralpredictors'
``FiringRateEncoder`` (ELU + 1). It is trained with the logic of ``sensorium.training.standard_trainer``
(re-implemented here, since the sensorium package needs nnfabrik): summed Poisson loss scaled by
sqrt(dataset size / batch size) plus the core's and readout's regularisers; Adam; one batch per recording
accumulated into each optimiser step (neuralpredictors' ``LongCycler``); ``ReduceLROnPlateau`` on the
validation correlation; and neuralpredictors' own ``early_stopping`` iterator (patience 5, best weights
restored at each of the 4 learning-rate decays and at the end). Every setting is in ``PEER_MODEL``,
``PEER_DATA`` and ``PEER_TRAINER`` below, each with the file it comes from.

Equal size: layers, channels, kernel sizes and depthwise-separable convolutions are taken from neurofit's
``--config`` (configs/default.yaml: 3 layers x 32 channels, input kernel 9, hidden kernel 7), in place of the
baseline notebook's 4 x 64. What stays as neuralpredictors builds it, and so differs from neurofit's core:

- stride: neuralpredictors' first layer has stride 1 (its ``stride`` argument only reaches the hidden layers);
  neurofit's default ``input_stride`` is 2, which gives a quarter of a stride-1 core's feature-map pixels;
- padding: the baseline's ``pad_input=False`` makes the 9 x 9 input layer "valid" (36 x 64 images give
  28 x 56 feature maps); neurofit pads to keep the image size;
- depthwise-separable layers: neuralpredictors' ``DepthSeparableConv2d`` is 1x1 -> depthwise k x k -> 1x1
  with biases, neurofit's is depthwise k x k -> 1x1;
- behaviour: the peer sees it as input channels, neurofit as a per-neuron gain (``model.modulator``).

Data: the store is read through ``neurofit.data.datamodule.NeuralDataModule``, so train, validation and test
trials and the normalisation statistics are neurofit's (``RecordingSpec``): stimulus z-scored, responses
divided by the training std as the Encoder does, behaviour and pupil z-scored (the baseline's
``NeuroNormalizer`` divides behaviour by its std without centring it). The test tier is scored with
``neurofit.metrics`` exactly as ``neurofit evaluate`` does, so the numbers are comparable with a run's
metrics.json.

    python scripts/benchmark_peer.py --data STORE.zarr --out DIR [--neurofit-runs RUN ...] [--max-epochs 200]

Writes DIR/peer_metrics.json (the metrics.json contract), DIR/peer_epochs.csv (epoch, wall_s,
val_correlation, val_objective, lr; epoch 0 is the untrained model) and DIR/benchmark_peer.json, which is also
printed: the peer's and each neurofit run's single-trial r, fraction of ceiling, epochs, wall time and the
wall time each needs to reach the peer's final validation correlation (linear interpolation on the
validation curves; speedup = the peer's time / the run's), and ratio = neurofit single-trial r / peer
single-trial r; ``same_data`` and ``same_core_size`` say whether a run was fitted on this store with the core
size the peer copied. Peer times count from its first validation (training only); a neurofit run is a directory
fitted with ``neurofit fit`` and scored with ``neurofit evaluate``; its per-validation times come from a
cumulative ``wall_s`` column in logs/metrics.csv when there is one, else from train_info.json's ``wall_s``
spread evenly over the training steps (which then includes the run's setup, e.g. the receptive-field mapping).

neuralpredictors 0.3.0 is the optional extra ``peer`` (``pip install -e .[peer]``; it pulls pandas and h5py),
or ``pip install neuralpredictors==0.3.0 --no-deps``. It imports on Python >= 3.10 only with run-time shims,
applied here: ``collections.Iterable`` is restored and, when torchvision is not installed, a stub stands in
for it (only its transfer-learning core, not used here, needs it).
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import random
import sys
import time
import types
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import yaml
from torch.utils.data import DataLoader, SubsetRandomSampler, TensorDataset

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from neurofit.config import load_config  # noqa: E402
from neurofit.data.datamodule import NeuralDataModule, tier_trials, validation_trials  # noqa: E402
from neurofit.data.spec import RecordingSpec  # noqa: E402
from neurofit.data.store import open_truth  # noqa: E402
from neurofit.errors import NeurofitError  # noqa: E402
from neurofit.io import atomic_path, write_json  # noqa: E402
from neurofit.metrics import correlation, mean_over_recordings, score  # noqa: E402

SENSORIUM = "github.com/sinzlab/sensorium"
#: Model settings: the SENSORIUM 2022 baseline notebook's model_config (notebooks/model_tutorial/
#: 1a_model_training_sensorium.ipynb and 1b_model_training_sensorium+.ipynb) over the defaults of
#: sensorium/models/models.py stacked_core_full_gauss_readout. Sizes (layers, hidden_channels, input_kern,
#: hidden_kern, depth_separable) come from the neurofit config instead; "shifter" is the SENSORIUM+ setting
#: and applies when the store has pupil positions.
PEER_MODEL = {
    "pad_input": False, "stack": -1, "gamma_input": 6.3831, "gamma_readout": 0.0076, "init_sigma": 0.1,
    "init_mu_range": 0.3, "gauss_type": "full", "shifter": True,
    "grid_mean_predictor": {"type": "cortex", "input_dimensions": 2, "hidden_layers": 1, "hidden_features": 30,
                            "final_tanh": True},
    # defaults of stacked_core_full_gauss_readout
    "skip": 0, "final_nonlinearity": True, "momentum": 0.9, "batch_norm": True, "hidden_dilation": 1,
    "laplace_padding": None, "input_regularizer": "LaplaceL2norm", "use_avg_reg": False, "readout_bias": True,
    "elu_offset": 0.0, "linear": False, "attention_conv": False, "hidden_padding": None, "core_bias": True,
    "shifter_type": "MLP", "input_channels_shifter": 2, "hidden_channels_shifter": 5, "shift_layers": 3,
    "gamma_shifter": 0.0,
}
#: Data settings: the notebooks' dataset_config for sensorium/datasets/mouse_loaders.py static_loaders
#: (SENSORIUM+: include_behavior and include_eye_position; behaviour added as channels, the loader's default).
#: Train batches are drawn with SubsetRandomSampler, validation and test ones in order.
PEER_DATA = {"batch_size": 128, "include_behavior": True, "add_behavior_as_channels": True,
             "include_eye_position": True}
#: Trainer settings: the notebooks' trainer_config over the defaults of sensorium/training/trainers.py
#: standard_trainer; the early stopping is neuralpredictors/training/early_stopping.py (0.3.0).
PEER_TRAINER = {
    "max_iter": 200, "lr_decay_steps": 4, "avg_loss": False, "lr_init": 0.009, "seed": 42,
    # defaults of standard_trainer
    "scale_loss": True, "loss_function": "PoissonLoss", "stop_function": "get_correlations",
    "loss_accum_batch_n": None, "interval": 1, "patience": 5, "epoch": 0, "maximize": True, "tolerance": 1e-6,
    "restore_best": True, "lr_decay_factor": 0.3, "min_lr": 0.0001, "detach_core": False,
}


#: The core sizes the peer copies from the neurofit config.
SIZE_KEYS = ("layers", "channels", "input_kernel", "hidden_kernel", "depthwise")


class BenchmarkError(Exception):
    """A problem with the inputs, reported as one line."""


def import_neuralpredictors() -> types.SimpleNamespace:
    """neuralpredictors 0.3.0's parts used here, after the shims it needs on Python >= 3.10."""
    import collections
    import collections.abc
    import importlib.util

    # conv2d.py does ``from collections import Iterable`` (removed in Python 3.10)
    if not hasattr(collections, "Iterable"):
        collections.Iterable = collections.abc.Iterable
    # conv2d.py imports torchvision at module level for TransferLearningCore alone; a stub keeps it
    # optional, but a real installation is never shadowed.
    if importlib.util.find_spec("torchvision") is None:
        sys.modules.setdefault("torchvision", types.ModuleType("torchvision"))
    try:
        import neuralpredictors
        from neuralpredictors.layers.cores import Stacked2dCore
        from neuralpredictors.layers.encoders import FiringRateEncoder
        from neuralpredictors.layers.readouts import FullGaussian2d, MultiReadoutSharedParametersBase
        from neuralpredictors.layers.shifters import MLPShifter
        from neuralpredictors.measures import modules
        from neuralpredictors.measures.np_functions import corr
        from neuralpredictors.training import LongCycler, early_stopping
        from neuralpredictors.utils import get_module_output
    except ImportError as err:
        raise BenchmarkError(f"neuralpredictors does not import ({err}); install it with `pip install -e "
                             ".[peer]` or `pip install neuralpredictors==0.3.0 --no-deps`") from None
    version = getattr(neuralpredictors, "__version__", None)
    if version is None:
        from importlib.metadata import version as dist_version

        version = dist_version("neuralpredictors")

    class MultipleFullGaussian2d(MultiReadoutSharedParametersBase):
        """One FullGaussian2d per recording (as sensorium/models/readouts.py defines it)."""

        _base_readout = FullGaussian2d

    return types.SimpleNamespace(
        version=version, Stacked2dCore=Stacked2dCore, FiringRateEncoder=FiringRateEncoder,
        MultipleFullGaussian2d=MultipleFullGaussian2d, MLPShifter=MLPShifter, PoissonLoss=modules.PoissonLoss,
        corr=corr, LongCycler=LongCycler, early_stopping=early_stopping, get_module_output=get_module_output)


def set_random_seed(seed: int) -> None:
    """Seed Python, numpy and torch, as nnfabrik's set_random_seed does before building and training."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed(seed)


# ---------------------------------------------------------------------------------------------------- data


@dataclass
class PeerRecording:
    """One recording in the peer's form: normalised tensors of its train, validation and test trials.

    ``dataset`` holds (stimulus (K, H, W), responses / training std (K, N), behaviour (K, C_b), pupil (K, 2 or
    0)) for the K used trials; ``train``, ``validation``, ``test`` index into it; ``n_trials`` counts every
    trial of the recording, because the baseline's loss scale uses the size of the whole dataset behind its
    train loader (all tiers). ``test_trials`` are the store's trial indices, ``test_responses`` the raw
    recorded test responses."""

    spec: RecordingSpec
    dataset: TensorDataset
    train: np.ndarray
    validation: np.ndarray
    test: np.ndarray
    n_trials: int
    test_trials: np.ndarray
    test_responses: np.ndarray
    test_group: np.ndarray


def _zscore(x: np.ndarray, mean, std) -> np.ndarray:
    """(x - mean) / std with non-finite entries set to 0 (the training mean), as the Encoder does."""
    z = (np.asarray(x, dtype=np.float64) - np.asarray(mean)) / np.asarray(std)
    return np.where(np.isfinite(z), z, 0.0).astype(np.float32)


def load_recordings(path: Path) -> tuple[dict[str, PeerRecording], bool, bool]:
    """Split and normalise every recording of the store with neurofit's data module and specs. Also returns
    whether behaviour (as input channels) and the shifter are used: a shared core needs the same input
    channels for every recording, so SENSORIUM+'s inputs are used when all recordings have them."""
    dm = NeuralDataModule(path, in_memory="auto")
    specs = dm.prepare_specs()
    n_behavior = {len(s.behavior_channels) for s in specs}
    use_behavior = PEER_DATA["include_behavior"] and len(n_behavior) == 1 and n_behavior != {0}
    use_pupil = PEER_DATA["include_eye_position"] and all(s.has_pupil for s in specs)
    recordings = {}
    for spec in specs:
        if spec.video:
            raise BenchmarkError(f"{path}: recording {spec.name!r} holds videos; the peer is the static-image "
                                 "baseline")
        arrays = dm.recordings[spec.name]
        parts = [arrays.trials("train"), validation_trials(arrays), tier_trials(arrays, "test")]
        if not len(parts[2]):
            raise BenchmarkError(f"{path}: recording {spec.name!r} has no test trials with responses")
        trials = np.concatenate(parts)
        batch = arrays.read(trials)
        st = spec.stats
        stim = _zscore(batch["stimulus"], st["stimulus_mean"], st["stimulus_std"])
        resp = np.asarray(batch["responses"], dtype=np.float64) / np.asarray(st["response_std"])
        resp = resp.astype(np.float32)
        empty = np.zeros((len(trials), 0), dtype=np.float32)
        beh = _zscore(batch["behavior"], st["behavior_mean"], st["behavior_std"]) if use_behavior else empty
        pupil = _zscore(batch["pupil_center"], st["pupil_mean"], st["pupil_std"]) if use_pupil else empty
        bounds = np.cumsum([0] + [len(p) for p in parts])
        local = [np.arange(bounds[i], bounds[i + 1]) for i in range(3)]
        recordings[spec.name] = PeerRecording(
            spec, TensorDataset(*(torch.from_numpy(a) for a in (stim, resp, beh, pupil))), *local,
            n_trials=len(arrays.tiers), test_trials=parts[2],
            test_responses=np.asarray(batch["responses"])[local[2]], test_group=arrays.stimulus_id[parts[2]])
    return recordings, use_behavior, use_pupil


def peer_inputs(stimulus: torch.Tensor, behavior: torch.Tensor) -> torch.Tensor:
    """Image (B, H, W) and behaviour (B, C_b) -> (B, 1 + C_b, H, W): each behaviour variable becomes a constant
    channel after the image, as the baseline's AddBehaviorAsChannels transform does."""
    x = stimulus.unsqueeze(1)
    if behavior.shape[1]:
        x = torch.cat([x, behavior[:, :, None, None].expand(-1, -1, *stimulus.shape[-2:])], dim=1)
    return x


# --------------------------------------------------------------------------------------------------- model


def core_sizes(config: str) -> dict:
    """Layers, channels, kernels, depthwise flag and stride of the neurofit config's conv core (the equal-size
    target), and that core's parameter count."""
    from neurofit.models.encoder import build_core

    core = load_config(config).model.core
    if core.name != "conv":
        raise BenchmarkError(f"{config}: model.core is {core.name!r}; the equal-size peer needs the 'conv' core")
    opts = core.options
    sizes = {key: opts[key] for key in SIZE_KEYS + ("input_stride",)}
    sizes["core_parameters"] = sum(p.numel() for p in build_core(core, 1).parameters())
    return sizes


def build_peer(npl: types.SimpleNamespace, recordings: dict[str, PeerRecording], sizes: dict, seed: int,
               use_behavior: bool, use_pupil: bool) -> torch.nn.Module:
    """The model stacked_core_full_gauss_readout builds, at neurofit's core size."""
    m = PEER_MODEL
    first = next(iter(recordings.values()))
    in_channels = 1 + (len(first.spec.behavior_channels) if use_behavior else 0)
    set_random_seed(seed)
    core = npl.Stacked2dCore(
        input_channels=in_channels, hidden_channels=sizes["channels"], input_kern=sizes["input_kernel"],
        hidden_kern=sizes["hidden_kernel"], layers=sizes["layers"], gamma_input=m["gamma_input"], skip=m["skip"],
        final_nonlinearity=m["final_nonlinearity"], bias=m["core_bias"], momentum=m["momentum"],
        pad_input=m["pad_input"], batch_norm=m["batch_norm"], hidden_dilation=m["hidden_dilation"],
        laplace_padding=m["laplace_padding"], input_regularizer=m["input_regularizer"], stack=m["stack"],
        depth_separable=sizes["depthwise"], linear=m["linear"], attention_conv=m["attention_conv"],
        hidden_padding=m["hidden_padding"], use_avg_reg=m["use_avg_reg"])
    in_shapes = {}
    k = sizes["input_kernel"]
    for name, rec in recordings.items():
        h, w = rec.spec.image_shape
        if not m["pad_input"] and min(h, w) < k:
            raise BenchmarkError(f"recording {name!r}: {h} x {w} images are smaller than the peer's unpadded "
                                 f"{k} x {k} input layer")
        in_shapes[name] = tuple(npl.get_module_output(core, (1, in_channels, h, w), use_cuda=False)[1:])
    grid = dict(m["grid_mean_predictor"])
    grid_type, input_dim = grid.pop("type"), grid.pop("input_dimensions")
    # cell_motor_coordinates[:, :2] in the baseline: the neurons' cortical x and y
    source_grids = {name: np.asarray(rec.spec.coords_um, dtype=np.float64)[:, :input_dim]
                    for name, rec in recordings.items()}
    # feature_reg_weight is neuralpredictors' current name for the baseline's (deprecated) gamma_readout
    readout = npl.MultipleFullGaussian2d(
        in_shape_dict=in_shapes, n_neurons_dict={n: r.spec.n_neurons for n, r in recordings.items()},
        init_mu_range=m["init_mu_range"], bias=m["readout_bias"], init_sigma=m["init_sigma"],
        feature_reg_weight=m["gamma_readout"], gauss_type=m["gauss_type"], grid_mean_predictor=grid,
        grid_mean_predictor_type=grid_type, source_grids=source_grids)
    shifter = None
    if use_pupil and m["shifter"]:
        shifter = npl.MLPShifter(
            data_keys=list(recordings), input_channels=m["input_channels_shifter"],
            hidden_channels_shifter=m["hidden_channels_shifter"], shift_layers=m["shift_layers"],
            gamma_shifter=m["gamma_shifter"])
    return npl.FiringRateEncoder(core=core, readout=readout, shifter=shifter, elu_offset=m["elu_offset"])


def _forward(model: torch.nn.Module, name: str, batch: list[torch.Tensor], device: torch.device) -> torch.Tensor:
    stim, _, beh, pupil = (t.to(device) for t in batch)
    return model(peer_inputs(stim, beh), data_key=name, behavior=beh,
                 pupil_center=pupil if pupil.shape[1] else None)


@torch.no_grad()
def predict(model: torch.nn.Module, name: str, rec: PeerRecording, index: np.ndarray, batch_size: int,
            device: torch.device) -> np.ndarray:
    """Predictions (normalised response units) for trials ``index`` of ``rec``, in order."""
    loader = DataLoader(rec.dataset, sampler=index.tolist(), batch_size=batch_size)
    return np.concatenate([_forward(model, name, batch, device).cpu().numpy() for batch in loader])


# ------------------------------------------------------------------------------------------------ training


class ValidationLog:
    """The early-stopping objective (the baseline's get_correlations: single-trial r of every neuron pooled
    over recordings, NaN counted as 0) that also records one row per training epoch.

    early_stopping calls the objective once before training, once after every epoch, and twice more at
    each learning-rate decay and at the end; only the first two kinds are epochs. Each row also has
    ``val_correlation`` as neurofit's ``val/correlation`` defines it (mean over neurons, then over
    recordings), the curve compared with neurofit's runs."""

    def __init__(self, npl: types.SimpleNamespace, model: torch.nn.Module, recordings: dict[str, PeerRecording],
                 batch_size: int, device: torch.device) -> None:
        self.npl, self.model, self.recordings = npl, model, recordings
        self.batch_size, self.device = batch_size, device
        self.rows: list[dict] = []
        self.pending: int | None = 0  # the epoch the next call scores, None for the extra calls
        self.lr = float("nan")
        self.start = time.perf_counter()

    def scores(self) -> tuple[float, float]:
        """(pooled objective, neurofit-style mean over recordings) of the model as it is now."""
        pooled, per_recording = [], []
        for name, rec in self.recordings.items():
            pred = predict(self.model, name, rec, rec.validation, self.batch_size, self.device)
            target = rec.dataset.tensors[1][rec.validation].numpy()
            r = self.npl.corr(target, pred, axis=0)
            pooled.append(np.where(np.isnan(r), 0.0, r))
            per_recording.append(float(np.mean(correlation(pred, target))))
        return float(np.mean(np.hstack(pooled))), float(np.mean(per_recording))

    def __call__(self, model: torch.nn.Module) -> float:
        objective, val = self.scores()
        if self.pending is not None:
            row = {"epoch": self.pending, "wall_s": time.perf_counter() - self.start, "val_correlation": val,
                   "val_objective": objective, "lr": self.lr}
            self.rows.append(row)
            print(f"peer epoch {row['epoch']:3d}  {row['wall_s']:8.1f} s  val r {val:.4f}  lr {self.lr:.2g}",
                  file=sys.stderr, flush=True)
            self.pending = None
        return objective


def train_peer(npl: types.SimpleNamespace, model: torch.nn.Module, recordings: dict[str, PeerRecording],
               max_epochs: int, batch_size: int, seed: int, device: torch.device) -> tuple[ValidationLog, float]:
    """standard_trainer's loop with PEER_TRAINER's settings; returns the validation log and the wall time
    of training (the first validation to the restored best weights)."""
    t = PEER_TRAINER
    model.to(device)
    set_random_seed(seed)
    model.train()
    criterion = npl.PoissonLoss(avg=t["avg_loss"])
    train_loaders = {name: DataLoader(rec.dataset, sampler=SubsetRandomSampler(rec.train.tolist()),
                                      batch_size=batch_size) for name, rec in recordings.items()}
    optimizer = torch.optim.Adam(model.parameters(), lr=t["lr_init"])
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
        optimizer, mode="max" if t["maximize"] else "min", factor=t["lr_decay_factor"], patience=t["patience"],
        threshold=t["tolerance"], min_lr=t["min_lr"], threshold_mode="abs")
    # loss_accum_batch_n None: gradients of one batch per recording are summed into each optimiser step
    step_every = len(train_loaders) if t["loss_accum_batch_n"] is None else t["loss_accum_batch_n"]

    def full_objective(name: str, batch: list[torch.Tensor]) -> torch.Tensor:
        n_batch = batch[0].shape[0]
        scale = math.sqrt(recordings[name].n_trials / n_batch) if t["scale_loss"] else 1.0
        reg = int(not t["detach_core"]) * model.core.regularizer() + model.readout.regularizer(name)
        return scale * criterion(_forward(model, name, batch, device), batch[1].to(device)) + reg

    log = ValidationLog(npl, model, recordings, batch_size, device)
    log.lr = optimizer.param_groups[0]["lr"]
    for epoch, _ in npl.early_stopping(
            model, log, interval=t["interval"], patience=t["patience"], start=t["epoch"], max_iter=max_epochs,
            maximize=t["maximize"], tolerance=t["tolerance"], restore_best=t["restore_best"], tracker=None,
            scheduler=scheduler, lr_decay_steps=t["lr_decay_steps"]):
        log.lr = optimizer.param_groups[0]["lr"]
        optimizer.zero_grad()
        for batch_no, (name, batch) in enumerate(npl.LongCycler(train_loaders)):
            loss = full_objective(name, batch)
            loss.backward()
            if (batch_no + 1) % step_every == 0:
                optimizer.step()
                optimizer.zero_grad()
        log.pending = epoch
    return log, time.perf_counter() - log.start


def best_epoch(rows: list[dict]) -> int:
    """The epoch whose weights early_stopping keeps: the last one that beat the best objective so far by more
    than the tolerance."""
    best, epoch = rows[0]["val_objective"], rows[0]["epoch"]
    for row in rows[1:]:
        if row["val_objective"] > best + PEER_TRAINER["tolerance"]:
            best, epoch = row["val_objective"], row["epoch"]
    return epoch


def score_test(model: torch.nn.Module, recordings: dict[str, PeerRecording], data: Path, batch_size: int,
               device: torch.device) -> dict:
    """Test-tier metrics in the metrics.json contract, computed by neurofit.metrics as neurofit evaluate does
    (predictions in recording units, repeats grouped by stimulus_id, the simulator's truth as the ceiling)."""
    model.eval()
    summaries = {}
    for name, rec in recordings.items():
        pred = predict(model, name, rec, rec.test, batch_size, device) * np.asarray(rec.spec.stats["response_std"])
        truth_ds = open_truth(data, name)
        truth = None
        if truth_ds is not None and "rates" in truth_ds:
            truth = np.asarray(truth_ds["rates"][rec.test_trials].values)
        summaries[name] = score(pred, rec.test_responses, rec.test_group, truth).summary()
    return {"tier": "test", "recordings": summaries, "mean": mean_over_recordings(summaries)}


# ------------------------------------------------------------------------------------------- neurofit runs


def time_to_reach(times: list[float], values: list[float], target: float) -> float | None:
    """Wall time at which a validation curve first reaches ``target``, interpolated linearly between the
    last point below and the first at or above it; the first point's time when it already is above (an upper
    bound), None when the curve never gets there."""
    for i, (t, v) in enumerate(zip(times, values)):
        if v >= target:
            if i == 0:
                return float(t)
            t0, v0 = times[i - 1], values[i - 1]
            return float(t0 + (t - t0) * (target - v0) / (v - v0))
    return None


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise BenchmarkError(f"{path}: {err}") from None


def read_neurofit_run(run: Path) -> dict:
    """A neurofit run's test metrics, training summary and validation curve (times in seconds)."""
    metrics = _read_json(run / "metrics.json")
    info = _read_json(run / "train_info.json")
    path = run / "logs" / "metrics.csv"
    try:
        with open(path, newline="") as fh:
            rows = [r for r in csv.DictReader(fh) if r.get("val/correlation")]
    except OSError as err:
        raise BenchmarkError(f"{path}: {err}") from None
    if not rows:
        raise BenchmarkError(f"{path}: no val/correlation rows (is {run} an encoder run?)")
    values = [float(r["val/correlation"]) for r in rows]
    if all(r.get("wall_s") for r in rows):
        times, source = [float(r["wall_s"]) for r in rows], "logs/metrics.csv wall_s"
    else:
        # Lightning logs a validation at the global step after that many batches minus one; spreading the
        # session's wall time evenly over steps places validations in time whatever val_check_interval was.
        steps = [int(float(r["step"])) + 1 for r in rows]
        if info.get("wall_s") is None:
            raise BenchmarkError(f"{run / 'train_info.json'}: no wall_s")
        wall = float(info["wall_s"])
        times, source = [wall * s / max(steps) for s in steps], "train_info wall_s spread over training steps"
    config = yaml.safe_load((run / "config.yaml").read_text()) if (run / "config.yaml").exists() else {}
    core = (config.get("model") or {}).get("core") or {}
    return {"metrics": metrics, "info": info, "times": times, "values": values, "time_source": source,
            "data": (config.get("data") or {}).get("path"), "config": info.get("config"), "core": core}


# -------------------------------------------------------------------------------------------------- main


def run(args: argparse.Namespace) -> dict:
    """Train and score the peer, read the neurofit runs, write the outputs; returns the benchmark report."""
    torch.set_num_threads(args.threads)
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    data = Path(args.data).resolve()
    runs = [read_neurofit_run(Path(r)) for r in args.neurofit_runs]  # fail on a bad run before training
    npl = import_neuralpredictors()
    sizes = core_sizes(args.config)
    recordings, use_behavior, use_pupil = load_recordings(data)
    specs = [rec.spec for rec in recordings.values()]
    model = build_peer(npl, recordings, sizes, args.seed, use_behavior, use_pupil)
    log, train_s = train_peer(npl, model, recordings, args.max_epochs, args.batch_size, args.seed, device)
    model.eval()
    final_objective, final_val = log.scores()
    metrics = score_test(model, recordings, data, args.batch_size, device)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "peer_metrics.json", metrics)
    fields = ["epoch", "wall_s", "val_correlation", "val_objective", "lr"]
    with atomic_path(out / "peer_epochs.csv") as tmp, open(tmp, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=fields)
        writer.writeheader()
        writer.writerows(log.rows)

    times = [r["wall_s"] for r in log.rows]
    values = [r["val_correlation"] for r in log.rows]
    epochs = log.rows[-1]["epoch"]
    # float noise aside, the restored best weights score exactly their epoch's validation value
    target = final_val - 1e-9
    peer_r = metrics["mean"]["single_trial_correlation"]
    peer = {
        "library": f"neuralpredictors {npl.version}", "n_parameters": sum(p.numel() for p in model.parameters()),
        "epochs": epochs, "best_epoch": best_epoch(log.rows),
        "stopped_by": "max_epochs" if epochs >= args.max_epochs else "early_stopping",
        "wall_s": train_s, "final_val_correlation": final_val, "final_val_objective": final_objective,
        "time_to_final_val_s": time_to_reach(times, values, target),
        "test": metrics["mean"],
        "single_trial_correlation": peer_r, "fraction_of_ceiling": metrics["mean"]["fraction_of_ceiling"],
        "settings": {"model": PEER_MODEL, "data": {**PEER_DATA, "batch_size": args.batch_size},
                     "trainer": {**PEER_TRAINER, "max_iter": args.max_epochs, "seed": args.seed},
                     "behavior_as_channels": use_behavior, "shifter": use_pupil, "device": str(device),
                     "threads": torch.get_num_threads(), "source": SENSORIUM},
    }
    h, w = specs[0].image_shape
    k, stride = sizes["input_kernel"], sizes["input_stride"]
    report = {
        "data": str(data),
        "sizes": {"neurofit": {**sizes, "feature_map": [math.ceil(h / stride), math.ceil(w / stride)]},
                  "peer": {key: sizes[key] for key in SIZE_KEYS}
                  | {"input_stride": 1, "pad_input": PEER_MODEL["pad_input"],
                     "input_channels": 1 + (len(specs[0].behavior_channels) if use_behavior else 0),
                     "feature_map": [h - k + 1, w - k + 1],
                     "core_parameters": sum(p.numel() for p in model.core.parameters())}},
        "peer": peer,
        "neurofit": [],
    }
    for path, nf in zip(args.neurofit_runs, runs):
        mean = nf["metrics"].get("mean", {})
        r = mean.get("single_trial_correlation")
        reach = time_to_reach(nf["times"], nf["values"], target)
        report["neurofit"].append({
            "run": str(path), "config": nf["config"], "tier": nf["metrics"].get("tier"),
            "same_data": nf["data"] is not None and Path(nf["data"]).resolve() == data,
            # the peer copies --config's core; a run fitted with another core size is not the equal-size match
            "same_core_size": all(nf["core"].get(key) == sizes[key] for key in SIZE_KEYS),
            "n_parameters": nf["info"].get("n_parameters"), "epochs": nf["info"].get("epochs"),
            "wall_s": nf["info"].get("wall_s"), "wall_time_source": nf["time_source"],
            "best_val_correlation": max(nf["values"]),
            "single_trial_correlation": r, "fraction_of_ceiling": mean.get("fraction_of_ceiling"),
            "time_to_peer_final_val_s": reach,
            "speedup_to_peer_final_val": (None if reach is None or not reach or peer["time_to_final_val_s"] is None
                                          else peer["time_to_final_val_s"] / reach),
            "ratio": None if r is None or not peer_r else r / peer_r,
        })
    write_json(out / "benchmark_peer.json", report)
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True, help="neurofit store (zarr) with static images")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--neurofit-runs", nargs="*", default=[], metavar="RUN",
                        help="neurofit run directories (fit + evaluate) to compare with")
    parser.add_argument("--config", default=str(ROOT / "configs" / "default.yaml"),
                        help="neurofit config whose core size the peer copies")
    parser.add_argument("--max-epochs", type=int, default=PEER_TRAINER["max_iter"],
                        help="the baseline's max_iter (default %(default)s)")
    parser.add_argument("--batch-size", type=int, default=PEER_DATA["batch_size"])
    parser.add_argument("--seed", type=int, default=PEER_TRAINER["seed"])
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    args = parser.parse_args()
    if args.max_epochs < 1 or args.batch_size < 1 or args.threads < 1:
        parser.error("--max-epochs, --batch-size and --threads must be >= 1")
    try:
        report = run(args)
    except (BenchmarkError, NeurofitError) as err:
        sys.exit(f"benchmark_peer: error: {err}")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
