"""DDP is the training of one process with the same global batch, however the processes are started.

Two processes on this CPU (gloo), started by Lightning (``--devices 2``), by two torchrun agents posing as two
nodes (``--nnodes 2 --node-rank 0/1`` on localhost), or as the two tasks of a faked ``srun`` (Lightning's
SLURM detection), train the default config (batch norm in the core) and a video config (truncated BPTT) as
one process does with twice the per-process batch. What makes them equal: the batch schedule comes from the
seed alone and each rank trains a disjoint part of every global batch (``datamodule.shard``); batch norm
normalises with the global batch's statistics (``GlobalBatchNorm``); DDP averages the gradients.

The readout's sampling jitter is random: each rank draws its own (``EncoderModule.on_train_start``), as one
process draws a different position for every trial, so with jitter two runs agree only statistically. The
comparisons here set ``model.readout.init_sigma`` to 1e-6 (jitter far below a pixel) and run deterministic:
measured, validation correlations agree to 3e-7 per epoch and predictions to 2e-6 of the largest one
(tolerances 1e-5 and 1e-4), while per-process batch norm (``training.sync_batchnorm=false``) is off by 0.01
in r and 3% in predictions after 3 epochs.

``tests/ddp_probe.py`` (``python -m neurofit`` plus a record per process) shows what each rank saw: its
cluster environment and rank, its trials per step, the chunks it decoded when streaming and the files it
wrote. Slow tests run real multi-process fits (about 20 s each); the rest are fast.
"""

from __future__ import annotations

import csv
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from neurofit.data import write_store
from neurofit.data.datamodule import ScheduleSampler, shard
from neurofit.run import load_run
from neurofit.training.sync_batchnorm import GlobalBatchNorm, GlobalBatchNormSync
from tests.conftest import static_and_video_stores, tiny_recording
from tests.test_bad_input import assert_nothing_written, assert_one_line_error, run_cli, run_sub

ROOT = Path(__file__).resolve().parents[1]
PROBE = ROOT / "tests" / "ddp_probe.py"
#: Deterministic, and the readout's sampling jitter far below a pixel, so runs can agree to float precision.
EXACT = ["--set", "training.deterministic=true", "--set", "model.readout.init_sigma=1.0e-6"]
ONE_THREAD = ["--threads", "1", "--accelerator", "cpu"]
#: The default config is compared on its trained weights (its EMA copy would barely move in these few steps).
TRAINED_WEIGHTS = ["--set", "training.ema_decay=null"]
STATIC = ["--config", "configs/default.yaml", "--max-epochs", "3", *TRAINED_WEIGHTS]
VIDEO = ["--config", "configs/video_gru.yaml", "--max-epochs", "2", "--set", "model.core.frontend.channels=4",
         "--set", "model.core.frontend.layers=1", "--set", "model.core.hidden_channels=4",
         "--set", "training.skip_frames=4", "--set", "training.tbptt_frames=4",
         "--set", "evaluation.skip_frames=4"]
#: Global batch: one process with batch 2 x B, or two processes with batch B.
BATCH = {"static": 8, "video": 4}
MODELS = {"static": STATIC, "video": VIDEO}
TWO_NODES = ["--num-nodes", "2", "--devices", "1", "--strategy", "ddp"]
#: Variables of the launchers this suite itself may run under; the test starts its own.
LAUNCHER_VARS = ("RANK", "LOCAL_RANK", "NODE_RANK", "GROUP_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE",
                 "MASTER_ADDR", "MASTER_PORT")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in LAUNCHER_VARS and not k.startswith(("SLURM_", "TORCHELASTIC_"))}
    return {**env, "PYTHONWARNINGS": "ignore", "PYTHONPATH": str(ROOT), **extra}


def fit_args(store: Path, out: Path, kind: str, batch: int, *extra: str) -> list[str]:
    return ["fit", "--data", str(store), "--out", str(out), *MODELS[kind], *EXACT, *ONE_THREAD,
            "--set", f"data.batch_size={batch}", *extra]


def run_processes(commands: list[tuple[list[str], dict[str, str]]], timeout: float = 600) -> None:
    """Start every (command, env) at once, as a launcher would, and wait for all; each must succeed."""
    procs = [subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for cmd, env in commands]
    try:
        outputs = [p.communicate(timeout=timeout)[0] for p in procs]
    finally:
        for p in procs:
            p.kill()
    for proc, output in zip(procs, outputs):
        assert proc.returncode == 0, output[-3000:]


def probe_fit(probe: Path, args: list[str], **env: str) -> None:
    run_processes([([sys.executable, str(PROBE), *args], clean_env(NEUROFIT_PROBE=str(probe), **env))])


def records(probe: Path) -> list[dict]:
    """The probe records of a fit's processes, by rank."""
    return sorted((json.loads(p.read_text()) for p in probe.glob("*.json")), key=lambda r: r["rank"])


def val_correlations(run: Path) -> list[float]:
    with open(run / "logs" / "metrics.csv") as fh:
        rows = [r for r in csv.DictReader(fh) if r.get("val/correlation")]
    assert len({r["epoch"] for r in rows}) == len(rows), "a validation row was written twice"
    return [float(r["val/correlation"]) for r in rows]


def predictions(run: Path, store: Path) -> np.ndarray:
    """The trained weights' predictions for every trial of every recording."""
    from neurofit.data import open_store

    fitted = load_run(run, "last")
    return np.concatenate([
        fitted.predict(name, *[ds[k].values if k in ds else None for k in ("stimulus", "behavior", "pupil_center")]
                       ).ravel() for name, ds in open_store(store).items()])


def assert_same_training(ddp: Path, single: Path, store: Path) -> None:
    """DDP trained the single process's model: validation r per epoch and the predictions agree."""
    np.testing.assert_allclose(val_correlations(ddp), val_correlations(single), atol=1e-5)
    ours, theirs = predictions(ddp, store), predictions(single, store)
    assert np.abs(ours - theirs).max() <= 1e-4 * np.abs(theirs).max()
    assert json.loads((ddp / "train_info.json").read_text())["world_size"] == 2


def assert_sharded_like_single(ranks: list[dict], single: dict, environment: str) -> None:
    """Every rank ran under ``environment`` and took, step by step, a disjoint part of the single process's
    batch (together all of it, in equal steps); only rank 0 wrote the run's files."""
    assert [(r["environment"], r["rank"], r["world_size"]) for r in ranks] == [(environment, 0, 2),
                                                                                (environment, 1, 2)]
    assert len(ranks[0]["steps"]) == len(ranks[1]["steps"]) == len(single["steps"])
    for step0, step1, whole in zip(ranks[0]["steps"], ranks[1]["steps"], single["steps"]):
        assert step0["recording"] == step1["recording"] == whole["recording"]
        assert not set(step0["trials"]) & set(step1["trials"])
        assert sorted(step0["trials"] + step1["trials"]) == sorted(whole["trials"])
        assert abs(len(step0["trials"]) - len(step1["trials"])) <= 1
    assert not ranks[1]["writes"], f"rank 1 wrote {ranks[1]['writes']}"
    written = {Path(p).name for p in ranks[0]["writes"]}
    assert {"config.yaml", "specs.json", "init.ckpt", "last.ckpt", "best.ckpt", "train_info.json"} <= written


@pytest.fixture(scope="module")
def stores(tmp_path_factory) -> dict[str, Path]:
    return static_and_video_stores(tmp_path_factory.mktemp("ddp"))


@pytest.fixture(scope="module")
def single(stores, tmp_path_factory) -> dict[str, tuple[Path, dict]]:
    """One process with the global batch, per model: its run and its probe record."""
    root = tmp_path_factory.mktemp("single")
    out = {}
    for kind, store in stores.items():
        probe_fit(root / f"{kind}_probe", fit_args(store, root / kind, kind, 2 * BATCH[kind]))
        out[kind] = (root / kind, records(root / f"{kind}_probe")[0])
    return out


# ---- fast -----------------------------------------------------------------------------------------------


def _bn_worker(rank: int, port: int, results) -> None:
    torch.set_num_threads(1)
    torch.distributed.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    model, x = _bn_model()
    model = GlobalBatchNormSync().apply(model)
    part = x[rank::2].clone().requires_grad_(True)
    loss = _bn_loss(model(part))
    loss.backward()
    grads = [p.grad.clone() for p in model.parameters()]
    for grad in grads:  # what DDP does with parameter gradients (as a sum; the loss is the global mean)
        torch.distributed.all_reduce(grad)
    results.put((rank, model(part).detach().numpy(), part.grad.numpy(), [g.numpy() for g in grads],
                 [b.numpy() for b in model.buffers()]))
    torch.distributed.destroy_process_group()


def _bn_model() -> tuple[torch.nn.Module, torch.Tensor]:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(1, 3, 3), torch.nn.BatchNorm2d(3), torch.nn.ELU(),
                                torch.nn.Unflatten(1, (3, 1)), torch.nn.Conv3d(3, 2, 1),
                                torch.nn.BatchNorm3d(2, momentum=None))
    return model, torch.randn(8, 1, 9, 11) * 3 + 1


def _bn_loss(y: torch.Tensor) -> torch.Tensor:
    """A loss that weighs every output differently (summed over the part, normalised by the global batch)."""
    weights = torch.linspace(-1, 2, y[0].numel()).reshape(y.shape[1:])
    return (y.square() * weights).sum() / 8


def test_global_batchnorm_is_batchnorm_of_the_global_batch():
    """Two processes with half the batch each: outputs, input and parameter gradients and running statistics
    of a conv + batch norm stack equal one process with the whole batch, and revert gives back the layers."""
    ctx = torch.multiprocessing.get_context("spawn")
    results, port = ctx.Queue(), free_port()
    workers = [ctx.Process(target=_bn_worker, args=(rank, port, results)) for rank in range(2)]
    for w in workers:
        w.start()
    parts = sorted((results.get(timeout=120) for _ in workers), key=lambda r: r[0])
    for w in workers:
        w.join()
    model, x = _bn_model()
    x = x.clone().requires_grad_(True)
    y = model(x)
    sum(_bn_loss(y[rank::2]) for rank in range(2)).backward()
    model(x)  # the workers' second forward pass, for the running statistics
    for rank, out, grad_in, _, _ in parts:
        np.testing.assert_allclose(out, y[rank::2].detach().numpy(), atol=1e-5)
        np.testing.assert_allclose(grad_in, x.grad[rank::2].numpy(), atol=1e-6)
    for grad, param in zip(parts[0][3], model.parameters()):
        np.testing.assert_allclose(grad, param.grad.numpy(), rtol=1e-4, atol=1e-5)
    for ours, theirs in zip(parts[0][4], model.buffers()):
        np.testing.assert_allclose(ours, theirs.numpy(), rtol=1e-5, atol=1e-7)
    synced = GlobalBatchNormSync().apply(model)
    assert isinstance(synced[1], GlobalBatchNorm) and synced[1].weight is model[1].weight
    back = GlobalBatchNormSync().revert(synced)
    assert type(back[1]) is torch.nn.BatchNorm2d and type(back[5]) is torch.nn.BatchNorm3d


def test_shards_are_disjoint_consecutive_and_cover_every_batch():
    """Each rank's part of a global batch is a block of consecutive trials (so it reads its own chunks), the
    parts are disjoint, cover the batch, differ in size by at most one, and every rank has the same steps."""
    rng = np.random.default_rng(0)
    batch = rng.permutation(100)[:37]
    for world in (1, 2, 3):
        parts = [shard(batch, rank, world) for rank in range(world)]
        assert sorted(np.concatenate(parts)) == sorted(batch)
        assert max(map(len, parts)) - min(map(len, parts)) <= 1
        assert all(p.max() < q.min() for p, q in zip(parts, parts[1:]))  # consecutive blocks
        assert all(list(p) == [t for t in batch if t in set(p)] for p in parts)  # in batch order
    trials, chunks = {"a": np.arange(80), "b": np.arange(30)}, {"a": 8, "b": 8}
    samplers = [ScheduleSampler(trials, chunks, 6, 0, "proportional", 2, rank, 2) for rank in range(2)]
    whole = ScheduleSampler(trials, chunks, 12, 0, "proportional", 2)
    steps = [list(s) for s in samplers]
    assert len(steps[0]) == len(steps[1]) == len(whole) == len(samplers[0])
    for (n0, t0), (n1, t1), (n, t) in zip(*steps, whole):
        assert n0 == n1 == n and sorted(np.concatenate([t0, t1])) == sorted(t)
        # a rank's chunks: its own, with at most one shared at the block boundary
        assert len(set(t0 // 8) & set(t1 // 8)) <= 1


@pytest.mark.parametrize("case, extra, names", [
    ("too many processes for the cores", ["--devices", str(len(os.sched_getaffinity(0)) + 1)], "--devices"),
    ("no devices", ["--devices", "0"], "--devices 0"),
    ("not a number", ["--devices", "two"], "--devices two"),
    ("nodes without a launcher", ["--num-nodes", "2"], "--num-nodes 2"),
    ("ddp with one process", ["--strategy", "ddp", "--devices", "1"], "--strategy ddp"),
    ("unknown strategy", ["--strategy", "fsdp"], "--strategy fsdp"),
    ("fp16 mixed precision on CPU", ["--set", "training.precision=16-mixed"], "16-mixed"),
    ("unknown accelerator", ["--accelerator", "tpu"], "--accelerator tpu"),
])
def test_a_layout_the_machine_cannot_run_is_refused_before_anything_is_written(case, extra, names, tiny_store,
                                                                              tmp_path):
    out = tmp_path / "run"
    result = run_cli("fit", "--data", tiny_store, "--config", "configs/ln.yaml", "--out", out,
                     "--accelerator", "cpu", *extra)
    assert_one_line_error(result, names)
    assert_nothing_written(out)


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_a_gpu_that_is_not_there_is_refused(tiny_store, tmp_path):
    out = tmp_path / "run"
    assert_one_line_error(run_cli("fit", "--data", tiny_store, "--config", "configs/ln.yaml", "--out", out,
                                  "--accelerator", "gpu"), "--accelerator gpu")
    assert_nothing_written(out)


@pytest.mark.parametrize("launcher, env, extra, names", [
    ("torchrun", {"TORCHELASTIC_RUN_ID": "t", "WORLD_SIZE": "2", "LOCAL_WORLD_SIZE": "1", "RANK": "0",
                  "LOCAL_RANK": "0", "GROUP_RANK": "0"}, ["--num-nodes", "3", "--devices", "1"],
     ["--num-nodes 3", "torchrun started 2 process(es), 1 per node"]),
    ("slurm", {"SLURM_NTASKS": "2", "SLURM_NTASKS_PER_NODE": "1", "SLURM_NNODES": "2", "SLURM_PROCID": "0",
               "SLURM_LOCALID": "0", "SLURM_NODEID": "0", "SLURM_JOB_ID": "7", "SLURM_JOB_NAME": "fit"},
     ["--num-nodes", "2", "--devices", "2"], ["--devices 2", "slurm started 2 process(es), 1 per node"]),
    ("slurm", {"SLURM_NTASKS": "2", "SLURM_PROCID": "0", "SLURM_LOCALID": "0", "SLURM_NODEID": "0",
               "SLURM_JOB_NAME": "fit"}, ["--num-nodes", "2", "--devices", "1"], "SLURM_NTASKS=2"),
])
def test_a_layout_that_differs_from_the_launchers_is_refused(launcher, env, extra, names, tiny_store, tmp_path,
                                                             monkeypatch):
    """Under torchrun or srun, --devices and --num-nodes must be the processes the launcher started (else
    Lightning would wait for ranks that never come)."""
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    out = tmp_path / "run"
    result = run_cli("fit", "--data", tiny_store, "--config", "configs/ln.yaml", "--out", out, "--accelerator",
                     "cpu", "--strategy", "ddp", *extra)
    assert_one_line_error(result, names)
    assert_nothing_written(out)


def test_a_refused_layout_in_a_real_process(tiny_store, tmp_path):
    out = tmp_path / "run"
    result = run_sub("fit", "--data", tiny_store, "--config", "configs/ln.yaml", "--out", out, "--accelerator",
                     "cpu", "--strategy", "ddp", "--devices", "1")
    assert_one_line_error(result, "--strategy ddp")
    assert_nothing_written(out)


# ---- slow: real multi-process fits ----------------------------------------------------------------------


@pytest.mark.slow
def test_two_processes_train_what_one_process_trains(stores, single, tmp_path):
    """Lightning starts the second process (--devices 2); with per-process batch norm instead of the global
    batch's, the same run is measurably different."""
    store, (reference, ref_probe) = stores["static"], single["static"]
    probe_fit(tmp_path / "probe", fit_args(store, tmp_path / "ddp", "static", BATCH["static"], "--devices", "2",
                                           "--strategy", "ddp"))
    assert_sharded_like_single(records(tmp_path / "probe"), ref_probe, "LightningEnvironment")
    assert_same_training(tmp_path / "ddp", reference, store)
    assert val_correlations(reference)[-1] > 0.2  # the model learned something worth comparing
    probe_fit(tmp_path / "probe_local", fit_args(store, tmp_path / "local_bn", "static", BATCH["static"],
                                                 "--devices", "2", "--strategy", "ddp",
                                                 "--set", "training.sync_batchnorm=false"))
    local, ours = predictions(tmp_path / "local_bn", store), predictions(reference, store)
    assert np.abs(local - ours).max() > 0.01 * np.abs(ours).max()


@pytest.mark.slow
def test_a_resumed_ddp_run_continues_on_every_rank_from_last_ckpt(stores, single, tmp_path):
    """Two epochs under DDP, then --resume to three: every rank restores checkpoints/last.ckpt (weights,
    optimiser, schedule, epoch), so the result is the uninterrupted single-process run's, and metrics.csv holds
    each epoch once."""
    store, (reference, _) = stores["static"], single["static"]
    args = fit_args(store, tmp_path / "ddp", "static", BATCH["static"], "--devices", "2", "--strategy", "ddp")
    epochs = args.index("--max-epochs") + 1
    probe_fit(tmp_path / "probe", [*args[:epochs], "2", *args[epochs + 1:]])
    probe_fit(tmp_path / "probe_resumed", [*args, "--resume"])
    assert_same_training(tmp_path / "ddp", reference, store)
    assert json.loads((tmp_path / "ddp" / "train_info.json").read_text())["epochs"] == 3


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["static", "video"])
def test_two_torchrun_nodes_train_what_one_process_trains(kind, stores, single, tmp_path):
    """Two torchrun agents, node ranks 0 and 1 on localhost, one process each."""
    store, (reference, ref_probe) = stores[kind], single[kind]
    port, probe = free_port(), tmp_path / "probe"
    args = fit_args(store, tmp_path / "ddp", kind, BATCH[kind], *TWO_NODES)
    run_processes([([sys.executable, "-m", "torch.distributed.run", "--nnodes", "2", "--nproc-per-node", "1",
                     "--node-rank", str(node), "--master-addr", "127.0.0.1", "--master-port", str(port),
                     str(PROBE), *args], clean_env(NEUROFIT_PROBE=str(probe))) for node in range(2)])
    assert_sharded_like_single(records(probe), ref_probe, "TorchElasticEnvironment")
    assert_same_training(tmp_path / "ddp", reference, store)


@pytest.mark.slow
def test_two_slurm_tasks_train_what_one_process_trains(stores, single, tmp_path):
    """The variables a two-node, one-task-per-node ``srun`` sets, so Lightning's SLURM detection runs."""
    store, (reference, ref_probe) = stores["static"], single["static"]
    port, probe = free_port(), tmp_path / "probe"
    args = fit_args(store, tmp_path / "ddp", "static", BATCH["static"], *TWO_NODES)
    slurm = {"SLURM_NTASKS": "2", "SLURM_NTASKS_PER_NODE": "1", "SLURM_NNODES": "2", "SLURM_JOB_ID": "4242",
             "SLURM_JOB_NAME": "neurofit", "SLURM_NODELIST": "node[0-1]", "SLURM_LOCALID": "0",
             "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)}
    run_processes([([sys.executable, str(PROBE), *args],
                    clean_env(NEUROFIT_PROBE=str(probe), SLURM_PROCID=str(task), SLURM_NODEID=str(task), **slurm))
                   for task in range(2)])
    assert_sharded_like_single(records(probe), ref_probe, "SLURMEnvironment")
    assert_same_training(tmp_path / "ddp", reference, store)


#: A stand-in for srun on one machine: the tasks of SLURM_NNODES x SLURM_NTASKS_PER_NODE, with srun's variables.
FAKE_SRUN = """#!/bin/bash
n=$((SLURM_NNODES * SLURM_NTASKS_PER_NODE)); pids=()
for ((task = 0; task < n; task++)); do
    SLURM_NTASKS=$n SLURM_PROCID=$task SLURM_LOCALID=$((task % SLURM_NTASKS_PER_NODE)) \\
        SLURM_NODEID=$((task / SLURM_NTASKS_PER_NODE)) "$@" & pids+=($!)
done
status=0; for pid in "${pids[@]}"; do wait "$pid" || status=$?; done; exit $status
"""


@pytest.mark.slow
def test_the_sbatch_script_fits_and_resumes_under_srun(stores, single, tmp_path):
    """scripts/slurm_fit.sbatch as a two-node, one-task-per-node job (CPU, a stand-in srun): the first
    submission trains two epochs, the second finds last.ckpt and resumes to three, which is the single
    process's run."""
    store, (reference, _) = stores["static"], single["static"]
    srun = tmp_path / "bin" / "srun"
    srun.parent.mkdir()
    srun.write_text(FAKE_SRUN)
    srun.chmod(0o755)
    env = clean_env(PATH=f"{srun.parent}:{os.environ['PATH']}", DATA=str(store), OUT=str(tmp_path / "run"),
                    CONFIG="configs/default.yaml", ACCELERATOR="cpu", VENV=str(Path(sys.executable).parents[1]),
                    SLURM_NNODES="2", SLURM_NTASKS_PER_NODE="1", SLURM_CPUS_PER_TASK="1", SLURM_JOB_ID="77",
                    SLURM_JOB_NAME="neurofit-fit", SLURM_NODELIST="127.0.0.1", MASTER_ADDR="127.0.0.1")
    options = [*EXACT, *TRAINED_WEIGHTS, "--set", f"data.batch_size={BATCH['static']}"]
    for epochs in (2, 3):
        run_processes([(["bash", "scripts/slurm_fit.sbatch", *options, "--max-epochs", str(epochs)],
                        {**env, "MASTER_PORT": str(free_port())})])
    assert_same_training(tmp_path / "run", reference, store)


@pytest.mark.slow
def test_streaming_ranks_read_only_the_chunks_of_their_own_trials(tmp_path, monkeypatch):
    """A store read lazily (data.in_memory=false) with 4-trial chunks and a 2-chunk cache window: each rank
    decodes, per epoch, only chunks its own trials lie in, about half of them (with interleaved shards every
    rank decoded every chunk: 18-19 of the 20 per epoch, against 9 now)."""
    monkeypatch.setattr("neurofit.data.store.trial_chunks", lambda ds, chunk_bytes=0: 4)
    recs = {f"m{i}": tiny_recording(f"m{i}", n_neurons=n, seed=i)[0] for i, n in enumerate((12, 9))}
    store = write_store(tmp_path / "chunked.zarr", recs)
    probe = tmp_path / "probe"
    probe_fit(probe, fit_args(store, tmp_path / "ddp", "static", 4, "--devices", "2", "--strategy", "ddp",
                              "--set", "data.in_memory=false", "--set", "data.shuffle_window=2"))
    ranks = records(probe)
    assert [r["rank"] for r in ranks] == [0, 1] and len(ranks[0]["steps"]) == len(ranks[1]["steps"])
    assert all(not set(a["trials"]) & set(b["trials"]) for a, b in zip(ranks[0]["steps"], ranks[1]["steps"]))
    train_chunks = 2 * 40 // 4  # two recordings of 40 training trials
    for rank in ranks:
        for epoch in (0, 1, 2):
            own = {(s["recording"], t // 4) for s in rank["steps"] if s["epoch"] == epoch for t in s["trials"]}
            reads = [(r["array"].split(":")[-1].split("/")[0], r["chunk"]) for r in rank["chunk_reads"]
                     if r["epoch"] == epoch and r["array"].endswith("/responses")]
            assert set(reads) <= own, "a rank decoded a chunk none of its trials lie in"
            assert len(reads) == len(set(reads)), "a chunk was decoded twice in one epoch"
            assert len(own) <= 0.7 * train_chunks
