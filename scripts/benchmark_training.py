"""Training throughput of the static encoder, and of an equivalent model built from neuralpredictors' layers;
with ``--strategy ddp``, its scaling over 1..N processes.

Prints one JSON object: trials/s, achieved TFLOP/s (forward FLOPs counted with torch's FlopCounterMode, a
training step taken as 3x forward) against the device's peak, peak memory, and the projected time of one epoch
at the chosen scale. Data are random tensors of the real shapes, held on the device (a SENSORIUM 2022-scale
static dataset fits in GPU memory), so the numbers measure the model step, not disk I/O (see
benchmark_loading.py for that). ``--compile`` and ``--channels-last`` are ``training.compile`` and
``training.channels_last``, applied by the same code as ``neurofit fit`` (``neurofit.training.speedups``).

    python scripts/benchmark_training.py                            # default data scale, CPU, one process
    python scripts/benchmark_training.py --devices 1 2 --strategy ddp   # 1 -> 2 processes on this CPU
    python scripts/benchmark_training.py --device cuda --precision bf16 --compile --channels-last \\
        --scale sensorium2022 --devices 1 2 4 8 --strategy ddp      # 1..8 GPUs of one node
    python scripts/benchmark_training.py --neuralpredictors         # side-by-side at equal model size

With ``--strategy ddp`` every process count in ``--devices`` runs in its own fresh processes (gloo on CPU, one
per GPU with nccl), each with ``--batch-size`` trials per step (weak scaling: the global batch grows with the
processes), synchronised batch norm and DDP's gradient all-reduce, as ``neurofit fit --strategy ddp`` trains.
On CPU each process gets ``--threads`` threads (default: the cores divided by the largest process count, so
every run uses the same threads per process). Scaling efficiency of N processes = trials/s with N / (N x
trials/s with one); the JSON also holds the load average of the machine before and after.

neuralpredictors 0.3.0 (pip install neuralpredictors pandas h5py --no-deps) needs run-time patches to import
on Python >= 3.10 (collections aliases; torchvision/skimage stubs for modules the readout/core never use).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import socket
import sys
import time
from pathlib import Path

# As `neurofit fit` runs (neurofit.cli): a short libgomp spin-wait, set before torch loads libgomp.
os.environ.setdefault("GOMP_SPINCOUNT", "1000")

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.distributed as dist  # noqa: E402
from torch.utils.flop_counter import FlopCounterMode  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from neurofit.config import load_config  # noqa: E402
from neurofit.data.spec import RecordingSpec  # noqa: E402
from neurofit.models.encoder import Encoder  # noqa: E402
from neurofit.training.losses import poisson_loss  # noqa: E402
from neurofit.training.speedups import apply_speedups  # noqa: E402
from neurofit.training.sync_batchnorm import GlobalBatchNormSync  # noqa: E402

SCALES = {  # recordings, neurons per recording, training trials per recording
    "default": (2, 300, 4000),
    "sensorium2022": (7, 8000, 5000),
}
#: Dense tensor-core peaks (bf16) and fp32 peaks per GPU, TFLOP/s, from the vendors' data sheets.
PEAK_TFLOPS = {"NVIDIA H100": {"bf16": 989.0, "32": 67.0}, "NVIDIA H200": {"bf16": 989.0, "32": 67.0},
               "NVIDIA A100": {"bf16": 312.0, "32": 19.5}}


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


def _device(args: argparse.Namespace, rank: int) -> torch.device:
    return torch.device("cuda", rank) if args.device == "cuda" else torch.device(args.device)


def run(args: argparse.Namespace, rank: int = 0, world_size: int = 1) -> dict:
    """Time ``args.steps`` training steps in this process (rank ``rank`` of ``world_size`` under DDP: an
    initialised process group, and every rank in step); trials/s and TFLOP/s are over all processes."""
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    device = _device(args, rank)
    n_rec, n_neurons, n_trials = SCALES[args.scale]
    specs = [fake_spec(f"rec{i}", n_neurons, rng) for i in range(n_rec)]
    overrides = list(args.set) + [f"training.compile={str(args.compile).lower()}",
                                  f"training.channels_last={str(args.channels_last).lower()}"]
    if args.equal_size and not args.neuralpredictors:
        # what the neuralpredictors model has: no modulator/shifter, learned positions
        overrides += ["model.modulator=null", "model.shifter=null", "model.readout.position=learned"]
    cfg = load_config(args.config, overrides)
    if args.neuralpredictors:
        model = neuralpredictors_model(specs, cfg.model.core.options).to(device)
        label = "neuralpredictors"
    else:
        model = Encoder(cfg.model, specs).to(device)
        label = "neurofit"
    b = args.batch_size
    stim = torch.randn(b, 36, 64, device=device)
    resp = torch.rand(b, n_neurons, device=device)
    beh, pupil = torch.randn(b, 3, device=device), torch.randn(b, 2, device=device)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=args.precision == "bf16")
    names = [s.name for s in specs]

    def forward(net: torch.nn.Module, name: str) -> torch.Tensor:
        return net(name, stim) if args.neuralpredictors else net(name, stim, beh, pupil)

    # Forward FLOPs are counted exactly, on the eager model; the step is taken as 3x forward (backward = 2x
    # forward), because torch's FlopCounterMode counts the backward of grouped (depthwise) convolutions as if
    # they were dense.
    with FlopCounterMode(display=False) as counter, torch.no_grad(), autocast:
        forward(model, names[0])
    flops = 3 * counter.get_total_flops()
    apply_speedups(model.core, cfg.training)
    step_model = model
    if world_size > 1:
        step_model = torch.nn.parallel.DistributedDataParallel(
            GlobalBatchNormSync().apply(model), device_ids=[rank] if device.type == "cuda" else None,
            find_unused_parameters=n_rec > 1)  # each step trains one recording's readout, as fit does
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)

    def step(name: str) -> None:
        with autocast:
            loss = poisson_loss(forward(step_model, name).float(), resp)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    for i in range(args.warmup):
        step(names[i % n_rec])
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
    if world_size > 1:
        dist.barrier()
    start = time.perf_counter()
    for i in range(args.steps):
        step(names[i % n_rec])
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    if world_size > 1:
        dist.barrier()  # the slowest rank sets the pace
    elapsed = time.perf_counter() - start
    trials_per_s = world_size * args.steps * b / elapsed
    tflops = world_size * flops * args.steps / elapsed / 1e12
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu"
    peak = next((v for k, v in PEAK_TFLOPS.items() if name.startswith(k)), {}).get(
        "bf16" if args.precision == "bf16" else "32")
    return {
        "model": label, "scale": args.scale, "device": name, "processes": world_size,
        "threads": torch.get_num_threads(), "precision": args.precision, "compile": args.compile,
        "channels_last": args.channels_last, "batch_size": b, "steps": args.steps,
        "n_parameters": sum(p.numel() for p in model.parameters()),
        "trials_per_s": round(trials_per_s, 1), "step_ms": round(1000 * elapsed / args.steps, 2),
        "gflop_per_step": round(flops / 1e9, 2), "achieved_tflops": round(tflops, 4),
        "fraction_of_peak": None if peak is None else round(tflops / (peak * world_size), 4),
        "epoch_s_projected": round(n_rec * n_trials / trials_per_s, 1),
        "peak_memory_mb": round((torch.cuda.max_memory_allocated(device) if device.type == "cuda"
                                 else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024) / 2**20, 1),
    }


def _worker(rank: int, world_size: int, port: int, args: argparse.Namespace, threads: int, results) -> None:
    """One DDP process of ``scaling``: its own threads, device and process group; rank 0 reports."""
    torch.set_num_threads(threads)
    backend = "nccl" if args.device == "cuda" else "gloo"
    if args.device == "cuda":
        torch.cuda.set_device(rank)
    dist.init_process_group(backend, init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world_size)
    try:
        result = run(args, rank, world_size)
        if rank == 0:
            results.put(result)
    finally:
        dist.destroy_process_group()


def scaling(args: argparse.Namespace) -> dict:
    """``run`` in fresh processes for every count in ``args.devices``, and the efficiency of each against one
    process (or the smallest count asked for)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    threads = args.threads or (max(1, cores // max(args.devices)) if args.device == "cpu" else 1)
    ctx = torch.multiprocessing.get_context("spawn")
    load_before = os.getloadavg()
    runs = []
    for n in args.devices:
        results = ctx.SimpleQueue()
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        torch.multiprocessing.spawn(_worker, args=(n, port, args, threads, results), nprocs=n, join=True)
        runs.append(results.get())
    base = min(runs, key=lambda r: r["processes"])
    per_process = base["trials_per_s"] / base["processes"]
    efficiency = {str(r["processes"]): round(r["trials_per_s"] / (r["processes"] * per_process), 3) for r in runs}
    return {"strategy": "ddp", "threads_per_process": threads, "cores": cores,
            "load_average_before": [round(x, 2) for x in load_before],
            "load_average_after": [round(x, 2) for x in os.getloadavg()],
            "scaling_efficiency": efficiency, "runs": runs}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="configs/default.yaml")
    parser.add_argument("--set", action="append", default=[], help="config override KEY=VALUE")
    parser.add_argument("--scale", choices=sorted(SCALES), default="default")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--precision", choices=["32", "bf16"], default="32")
    parser.add_argument("--compile", action="store_true", help="training.compile (torch.compile of the core)")
    parser.add_argument("--channels-last", action="store_true", help="training.channels_last")
    parser.add_argument("--batch-size", type=int, default=64, help="trials per step and process")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--strategy", choices=["ddp"], default=None,
                        help="time DDP in fresh processes for every count in --devices")
    parser.add_argument("--devices", type=int, nargs="+", default=[1, 2],
                        help="process counts (CPU processes or GPUs) with --strategy ddp")
    parser.add_argument("--threads", type=int, default=None, help="torch threads per process")
    parser.add_argument("--neuralpredictors", action="store_true", help="time the neuralpredictors-built model")
    parser.add_argument("--equal-size", action="store_true",
                        help="neurofit without modulator/shifter and with learned positions (= neuralpredictors)")
    args = parser.parse_args()
    if args.device == "cuda" and args.strategy and max(args.devices) > torch.cuda.device_count():
        parser.error(f"--devices {max(args.devices)}: this node has {torch.cuda.device_count()} GPU(s)")
    if args.strategy is None:
        if args.threads:
            torch.set_num_threads(args.threads)
        print(json.dumps(run(args)))
    else:
        print(json.dumps(scaling(args)))


if __name__ == "__main__":
    main()
