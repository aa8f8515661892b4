"""Where the training processes come from, and what they can run.

``resolve_launch`` turns ``--accelerator``, ``--devices``, ``--num-nodes`` and ``--strategy`` into a ``Launch``
and checks them, with the config's precision and compile switches, against what this process can see: the
GPUs or CPU cores of its node and the processes an external launcher started. The checks run in every
process, before anything is written, so a bad combination ends all of them with the same one-line
``ConfigError`` (Lightning would otherwise silently swap ``16-mixed`` for ``bf16-mixed`` on CPU, or wait for
nodes that never come).

Launchers: ``lightning`` (one node; Lightning starts ``--devices`` processes itself), ``torchrun``
(``WORLD_SIZE``, ``LOCAL_WORLD_SIZE``) and ``slurm`` (``srun``: ``SLURM_NTASKS``, ``SLURM_NTASKS_PER_NODE``,
``SLURM_NNODES``), detected as Lightning detects them (torchrun first, since it may run inside a SLURM job).
"""

from __future__ import annotations

import importlib.util
import os
import shutil
from dataclasses import dataclass

import torch

from neurofit.config.schema import TrainingConfig
from neurofit.errors import ConfigError

STRATEGIES = ("auto", "ddp")
ACCELERATORS = {"auto": "auto", "cpu": "cpu", "gpu": "gpu", "cuda": "gpu"}


@dataclass(frozen=True)
class Launch:
    """The checked process layout: ``accelerator`` "cpu" or "gpu", ``devices`` processes per node, ``num_nodes``
    nodes."""

    accelerator: str
    devices: int
    num_nodes: int

    @property
    def world_size(self) -> int:
        return self.devices * self.num_nodes

    def strategy(self, n_recordings: int) -> str:
        """Lightning's strategy: DDP for more than one process; with several recordings each step trains one
        recording's readout and the others get no gradient, which DDP must be told."""
        if self.world_size == 1:
            return "auto"
        return "ddp_find_unused_parameters_true" if n_recordings > 1 else "ddp"


def resolve_launch(accelerator: str, devices: int | str, num_nodes: int, strategy: str,
                   training: TrainingConfig) -> Launch:
    """The checked ``Launch`` for these options; ``ConfigError`` naming the option that cannot work."""
    if accelerator not in ACCELERATORS:
        raise ConfigError(f"--accelerator {accelerator}: unknown (choose cpu, gpu or auto)")
    kind = ACCELERATORS[accelerator]
    if kind == "auto":
        kind = "gpu" if torch.cuda.is_available() else "cpu"
    elif kind == "gpu" and not torch.cuda.is_available():
        raise ConfigError("--accelerator gpu: no CUDA GPU is visible to this process")
    if strategy not in STRATEGIES:
        raise ConfigError(f"--strategy {strategy}: unknown (choose {' or '.join(STRATEGIES)})")
    if num_nodes < 1:
        raise ConfigError(f"--num-nodes {num_nodes}: must be >= 1")
    launcher, world, per_node = _external_launcher()
    if devices == "auto":
        devices = per_node if launcher != "lightning" else (torch.cuda.device_count() if kind == "gpu" else 1)
    if not isinstance(devices, int) or devices < 1:
        raise ConfigError(f"--devices {devices}: must be a number of processes per node (>= 1) or auto")
    _check_node_capacity(kind, devices)
    if launcher == "lightning" and num_nodes > 1:
        raise ConfigError(f"--num-nodes {num_nodes}: more than one node needs a launcher that starts the "
                          "processes of every node (torchrun --nnodes, or srun in a SLURM job); this process was "
                          "started alone")
    if launcher != "lightning" and (devices != per_node or devices * num_nodes != world):
        raise ConfigError(f"--devices {devices} --num-nodes {num_nodes}: {launcher} started {world} process(es), "
                          f"{per_node} per node (use --devices {per_node} --num-nodes {world // per_node})")
    launch = Launch(kind, devices, num_nodes)
    if strategy == "ddp" and launch.world_size == 1:
        raise ConfigError("--strategy ddp: only one process (--devices 1 --num-nodes 1); DDP needs --devices N "
                          "> 1 or several nodes")
    _check_precision(kind, training.precision)
    if training.compile:
        _check_compiler(kind)
    return launch


def _external_launcher() -> tuple[str, int, int]:
    """(launcher, world size, processes per node) of the launcher that started this process; ("lightning",
    1, 1) when none did."""
    if torch.distributed.is_available() and torch.distributed.is_torchelastic_launched():
        return "torchrun", int(os.environ["WORLD_SIZE"]), int(os.environ["LOCAL_WORLD_SIZE"])
    from lightning.fabric.plugins.environments import SLURMEnvironment

    if SLURMEnvironment.detect():
        tasks = int(os.environ["SLURM_NTASKS"])
        per_node = os.environ.get("SLURM_NTASKS_PER_NODE")
        if per_node is None and tasks > 1:
            raise ConfigError(f"SLURM_NTASKS={tasks}: the job sets --ntasks without --ntasks-per-node, which "
                              "Lightning needs (e.g. #SBATCH --ntasks-per-node=4)")
        # "4" or, for uneven nodes, "4(x2),2": Lightning supports one count for every node
        return "slurm", tasks, int((per_node or "1").split("(")[0])
    return "lightning", 1, 1


def _check_node_capacity(kind: str, devices: int) -> None:
    """``devices`` processes fit this node: one GPU each, or one CPU core each (more processes than cores
    only take turns on them)."""
    if kind == "gpu":
        visible = torch.cuda.device_count()
        if devices > visible:
            raise ConfigError(f"--devices {devices}: this node has {visible} visible GPU(s)")
        return
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    if devices > cores:
        raise ConfigError(f"--devices {devices}: this machine has {cores} CPU core(s) for this process, fewer "
                          "than the processes asked for")


def _check_precision(kind: str, precision: str) -> None:
    if kind == "cpu" and precision == "16-mixed":
        raise ConfigError("training.precision 16-mixed: fp16 mixed precision needs a GPU (on CPU Lightning would "
                          "silently train bf16-mixed instead); use bf16-mixed")
    if kind == "gpu" and precision.startswith("bf16") and not torch.cuda.is_bf16_supported():
        raise ConfigError(f"training.precision {precision}: this GPU has no bfloat16 support; use 16-mixed")


def _check_compiler(kind: str) -> None:
    """torch.compile's inductor backend builds C++ kernels on CPU and Triton kernels on GPU."""
    if kind == "cpu":
        compilers = [os.environ.get("CXX"), "g++", "c++", "clang++"]
        if not any(c and shutil.which(c) for c in compilers):
            raise ConfigError("training.compile: torch.compile on CPU needs a C++ compiler (g++, c++ or clang++ "
                              "on PATH, or CXX); none was found")
    elif importlib.util.find_spec("triton") is None:
        raise ConfigError("training.compile: torch.compile on GPU needs triton (pip install triton)")
