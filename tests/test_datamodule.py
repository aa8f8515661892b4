"""Batch schedules: deterministic, disjoint DDP shards with equal counts, balanced/proportional sampling,
and streaming from zarr returning the same batches as memory."""

import numpy as np
import pytest

from neurofit.data.datamodule import NeuralDataModule, ScheduleSampler, epoch_schedule, load_arrays
from neurofit.errors import ConfigError, DataError

TRIALS = {"a": np.arange(100), "b": np.arange(30)}
CHUNKS = {"a": 16, "b": 16}


def test_schedule_is_deterministic_and_covers_each_trial_once():
    s1 = epoch_schedule(TRIALS, CHUNKS, 8, seed=0, epoch=3)
    s2 = epoch_schedule(TRIALS, CHUNKS, 8, seed=0, epoch=3)
    assert [(n, b.tolist()) for n, b in s1] == [(n, b.tolist()) for n, b in s2]
    s3 = epoch_schedule(TRIALS, CHUNKS, 8, seed=0, epoch=4)
    assert [b.tolist() for _, b in s1] != [b.tolist() for _, b in s3]
    for name, trials in TRIALS.items():
        seen = np.concatenate([b for n, b in s1 if n == name])
        assert sorted(seen.tolist()) == trials.tolist()


def test_batches_read_few_chunks():
    sched = epoch_schedule({"a": np.arange(1024)}, {"a": 64}, 32, seed=0, epoch=0, window=2)
    chunks_per_batch = [len(np.unique(b // 64)) for _, b in sched]
    assert max(chunks_per_batch) <= 3  # a window of 2 chunks, plus a window boundary


def test_balanced_sampling_equalises_recordings():
    sched = epoch_schedule(TRIALS, CHUNKS, 10, seed=1, epoch=0, sampling="balanced")
    counts = {n: sum(1 for m, _ in sched if m == n) for n in TRIALS}
    assert counts["a"] == counts["b"] == 10
    with pytest.raises(ConfigError, match="unknown"):
        epoch_schedule(TRIALS, CHUNKS, 10, seed=1, epoch=0, sampling="bogus")


def test_ddp_shards_are_disjoint_with_equal_step_counts():
    samplers = [ScheduleSampler(TRIALS, CHUNKS, 8, 0, "proportional", 8, rank=r, world_size=2) for r in (0, 1)]
    for s in samplers:
        s.set_epoch(2)
    steps = [list(s) for s in samplers]
    assert len(steps[0]) == len(steps[1]) > 0
    for (n0, b0), (n1, b1) in zip(*steps):
        assert n0 == n1  # ranks train the same recording at every step
        assert not set(b0.tolist()) & set(b1.tolist())
    covered = {n: set() for n in TRIALS}
    for rank_steps in steps:
        for n, b in rank_steps:
            covered[n] |= set(b.tolist())
    assert all(len(covered[n]) >= len(TRIALS[n]) - 1 for n in TRIALS)


def test_streaming_equals_memory(tiny_store):
    lazy, mem = load_arrays(tiny_store, "m0", False), load_arrays(tiny_store, "m0", True)
    trials = np.array([7, 2, 30, 5])
    a, b = lazy.read(trials), mem.read(trials)
    for key in a:
        np.testing.assert_array_equal(a[key], b[key])
    assert lazy.trials("validation").tolist() == list(range(40, 50))


def test_datamodule_specs_and_errors(tiny_store):
    dm = NeuralDataModule(tiny_store, batch_size=8)
    specs = dm.prepare_specs()
    assert [s.name for s in specs] == ["m0", "m1"] and specs[1].n_neurons == 9
    assert len(specs[0].stats["response_std"]) == 12 and specs[0].behavior_channels
    batch = next(iter(dm.train_dataloader()))
    assert batch["stimulus"].shape[1:] == (8, 10) and batch["recording"] in ("m0", "m1")
    with pytest.raises(DataError, match="no recording"):
        NeuralDataModule(tiny_store, recordings=["zzz"])


def test_chunk_cache_reads_each_chunk_once_per_window():
    from neurofit.data.datamodule import ChunkCache

    class CountingArray:
        """An on-disk-like array that counts slice reads."""

        def __init__(self, data, chunk):
            self.data, self.chunks, self.reads = data, (chunk, 1), 0
            self.shape, self.dtype = data.shape, data.dtype

        def __getitem__(self, key):
            self.reads += 1
            return self.data[key]

    data = np.arange(1024 * 3, dtype=np.float32).reshape(1024, 3)
    arr = CountingArray(data, 64)
    cache = ChunkCache(arr, capacity=4)
    sched = epoch_schedule({"a": np.arange(1024)}, {"a": 64}, 32, seed=0, epoch=0, window=2)
    for _, batch in sched:
        np.testing.assert_array_equal(cache.read(batch), data[batch])
    assert arr.reads == 1024 // 64  # every chunk decoded exactly once in the epoch
