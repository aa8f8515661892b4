"""Training throughput of the static encoder, and of an equivalent model built from neuralpredictors' layers.

Prints one JSON object: trials/s, achieved TFLOP/s (forward FLOPs counted with torch's FlopCounterMode, a
training step taken as 3x forward), peak memory,
and the projected time of one epoch at the chosen scale. Data are random tensors of the real shapes, held
on the device (a SENSORIUM 2022-scale static dataset fits in GPU memory), so the numbers measure the model
step, not disk I/O (see benchmark_loading.py for that).

    python scripts/benchmark_training.py                            # default data scale, CPU
    python scripts/benchmark_training.py --scale sensorium2022 --device cuda --precision bf16 --compile
    python scripts/benchmark_training.py --neuralpredictors         # side-by-side at equal model size

neuralpredictors 0.3.0 (pip install neuralpredictors pandas h5py --no-deps) needs run-time patches to import
on Python >= 3.10 (collections aliases; torchvision/skimage stubs for modules the readout/core never use).
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from neurofit.config import load_config  # noqa: E402
from neurofit.data.spec import RecordingSpec  # noqa: E402
from neurofit.models.encoder import Encoder  # noqa: E402
from neurofit.training.losses import poisson_loss  # noqa: E402

SCALES = {  # recordings, neurons per recording, training trials per recording
    "default": (2, 300, 4000),
    "sensorium2022": (7, 8000, 5000),
}
PEAK_TFLOPS = {"NVIDIA H100": {"bf16": 989.0, "32": 67.0}, "NVIDIA H200": {"bf16": 989.0, "32": 67.0}}


def fake_spec(name: str, n: int, rng: np.random.Generator) -> RecordingSpec:
    """A RecordingSpec with SENSORIUM-like sizes and unit statistics."""
    stats = {"stimulus_mean": 0.0, "stimulus_std": 1.0, "response_std": [1.0] * n,
             "response_mean": [1.0] * n, "behavior_mean": [0.0] * 3, "behavior_std": [1.0] * 3,
             "pupil_mean": [0.0] * 2, "pupil_std": [1.0] * 2}
    return RecordingSpec(name, n, list(range(n)), rng.uniform(0, 600, (n, 3)).tolist(), (36, 64), False,
                         ["pupil_dilation", "pupil_dilation_derivative", "running_speed"], True, None, stats)


def neuralpredictors_model(specs: list[RecordingSpec], core_cfg: dict) -> torch.nn.Module:
    """The same architecture from neuralpredictors 0.3.0 layers: Stacked2dCore + FullGaussian2d per recording."""
    import collections
    import collections.abc
    import types

    for alias in ("Iterable", "Mapping", "MutableMapping", "Sequence"):
        setattr(collections, alias, getattr(collections.abc, alias))
    for mod in ("torchvision", "torchvision.models", "skimage", "skimage.transform"):
        sys.modules.setdefault(mod, types.ModuleType(mod))
    from neuralpredictors.layers.cores import Stacked2dCore
    from neuralpredictors.layers.readouts import FullGaussian2d

    c = core_cfg["channels"]

    class NPModel(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.core = Stacked2dCore(1, c, core_cfg["input_kernel"], core_cfg["hidden_kernel"],
                                      layers=core_cfg["layers"], depth_separable=core_cfg["depthwise"],
                                      pad_input=True, gamma_input=0.1, stack=-1)
            self.readouts = torch.nn.ModuleDict({
                s.name: FullGaussian2d((c, 36, 64), s.n_neurons, bias=True, init_sigma=0.2) for s in specs})

        def forward(self, name: str, x: torch.Tensor) -> torch.Tensor:
            return torch.nn.functional.elu(self.readouts[name](self.core(x.unsqueeze(1)))) + 1

    return NPModel()


def run(args: argparse.Namespace) -> dict:
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    device = torch.device(args.device)
    n_rec, n_neurons, n_trials = SCALES[args.scale]
    specs = [fake_spec(f"rec{i}", n_neurons, rng) for i in range(n_rec)]
    overrides = list(args.set)
    if args.equal_size and not args.neuralpredictors:
        # what the neuralpredictors model has: no modulator/shifter, learned positions
        overrides += ["model.modulator=null", "model.shifter=null", "model.readout.position=learned"]
    cfg = load_config(args.config, overrides).model
    if args.neuralpredictors:
        model = neuralpredictors_model(specs, cfg.core.options).to(device)
        label = "neuralpredictors"
    else:
        model = Encoder(cfg, specs).to(device)
        label = "neurofit"
    if args.channels_last:
        model = model.to(memory_format=torch.channels_last)
    step_model = torch.compile(model) if args.compile else model
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    b = args.batch_size
    stim = torch.randn(b, 36, 64, device=device)
    resp = torch.rand(b, n_neurons, device=device)
    beh, pupil = torch.randn(b, 3, device=device), torch.randn(b, 2, device=device)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=args.precision == "bf16")

    def forward(name: str) -> torch.Tensor:
        return step_model(name, stim) if args.neuralpredictors else step_model(name, stim, beh, pupil)

    def step(name: str) -> None:
        with autocast:
            loss = poisson_loss(forward(name).float(), resp)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    names = [s.name for s in specs]
    for i in range(args.warmup):
        step(names[i % n_rec])
    # Forward FLOPs are counted exactly; the step is taken as 3x forward (backward = 2x forward), because
    # torch's FlopCounterMode counts the backward of grouped (depthwise) convolutions as if they were dense.
    with FlopCounterMode(display=False) as counter, torch.no_grad(), autocast:
        forward(names[0])
    flops = 3 * counter.get_total_flops()
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    for i in range(args.steps):
        step(names[i % n_rec])
    if device.type == "cuda":
        torch.cuda.synchronize()
    elapsed = time.perf_counter() - start
    trials_per_s = args.steps * b / elapsed
    tflops = flops * args.steps / elapsed / 1e12
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu"
    peak = next((v for k, v in PEAK_TFLOPS.items() if name.startswith(k)), {}).get(
        "bf16" if args.precision == "bf16" else "32")
    return {
        "model": label, "scale": args.scale, "device": name, "threads": torch.get_num_threads(),
        "precision": args.precision, "compile": args.compile, "batch_size": b, "steps": args.steps,
        "n_parameters": sum(p.numel() for p in model.parameters()),
        "trials_per_s": round(trials_per_s, 1), "step_ms": round(1000 * elapsed / args.steps, 2),
        "gflop_per_step": round(flops / 1e9, 2), "achieved_tflops": round(tflops, 4),
        "fraction_of_peak": None if peak is None else round(tflops / peak, 4),
        "epoch_s_projected": round(n_rec * n_trials / trials_per_s, 1),
        "peak_memory_mb": round((torch.cuda.max_memory_allocated() if device.type == "cuda"
                                 else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024) / 2**20, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="configs/default.yaml")
    parser.add_argument("--set", action="append", default=[], help="config override KEY=VALUE")
    parser.add_argument("--scale", choices=sorted(SCALES), default="default")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--precision", choices=["32", "bf16"], default="32")
    parser.add_argument("--compile", action="store_true")
    parser.add_argument("--channels-last", action="store_true")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--neuralpredictors", action="store_true", help="time the neuralpredictors-built model")
    parser.add_argument("--equal-size", action="store_true",
                        help="neurofit without modulator/shifter and with learned positions (= neuralpredictors)")
    print(json.dumps(run(parser.parse_args())))


if __name__ == "__main__":
    main()
