"""RF centres from data and the readout positions they start."""

from __future__ import annotations

import numpy as np
import torch

from neurofit.data.datamodule import NeuralDataModule
from neurofit.models.readouts.gaussian import GaussianReadout
from neurofit.models.readouts.rf_mapping import (
    centres_from_maps,
    centres_from_scores,
    estimate_rf_centres,
    ridge_score_maps,
    scores_near,
)
from neurofit.models.readouts.ridge_gcv import gcv_errors, spectrum
from neurofit.training.readout_init import init_readouts, mapping_samples
from tests.conftest import tiny_recording

H, W = 24, 40


def _gabor_population(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Simple and complex Gabor cells at random centres: (centres (n, 2) px, even and odd filters (n, H*W))."""
    yy, xx = np.mgrid[0:H, 0:W].astype(float)
    centres = np.stack([rng.uniform(6, W - 7, n), rng.uniform(6, H - 7, n)], 1)
    even, odd = [], []
    for cx, cy in centres:
        theta, freq, sigma = rng.uniform(0, np.pi), rng.uniform(0.08, 0.25), rng.uniform(1.5, 3.0)
        u = (xx - cx) * np.cos(theta) + (yy - cy) * np.sin(theta)
        envelope = np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * sigma**2))
        even.append((envelope * np.cos(2 * np.pi * freq * u)).ravel())
        odd.append((envelope * np.sin(2 * np.pi * freq * u)).ravel())
    return centres, np.array(even), np.array(odd)


def test_estimated_centres_match_simple_and_complex_cells():
    rng = np.random.default_rng(0)
    n, t = 40, 3000
    centres, even, odd = _gabor_population(n, rng)
    images = rng.normal(128, 40, size=(t, H, W)).astype(np.float32)
    x = (images - 128).reshape(t, -1)
    a, b = x @ even.T, x @ odd.T
    complex_cell = np.arange(n) % 2 == 1
    drive = np.where(complex_cell, np.hypot(a, b), np.maximum(a, 0))
    responses = rng.poisson(drive / drive.std(0) * 2).astype(np.float32)
    est = estimate_rf_centres(images, responses)
    error = np.linalg.norm(est.centres_px - centres, axis=1)
    assert np.median(error[complex_cell]) < 1.0
    assert np.median(error[~complex_cell]) < 1.0
    assert (est.strength > 0.05).all()


def test_a_neuron_without_visual_drive_gets_zero_strength():
    rng = np.random.default_rng(1)
    images = rng.normal(128, 40, size=(2000, H, W)).astype(np.float32)
    noise = rng.normal(size=(2000, 3)).astype(np.float32)
    est = estimate_rf_centres(images, noise)
    assert (est.strength < 0.12).all()  # chance-level correlation with the best of H*W*3 energy maps


def test_gcv_errors_match_a_direct_ridge_fit():
    gen = torch.Generator().manual_seed(0)
    x, y = torch.randn(1, 300, 6, generator=gen).double(), torch.randn(1, 300, 4, generator=gen).double()
    xc, yc = x - x.mean(1, keepdim=True), y - y.mean(1, keepdim=True)
    eig, vec = spectrum(xc)
    errors, lam = gcv_errors(eig, vec.transpose(1, 2) @ (xc.transpose(1, 2) @ yc), (yc**2).sum(1), 300)
    for k in (0, 5, 10):
        hat = xc[0] @ torch.linalg.solve(xc[0].T @ xc[0] + lam[k, 0, 0] * torch.eye(6, dtype=torch.double),
                                         xc[0].T)
        rss = ((yc[0] - hat @ yc[0]) ** 2).sum(0)
        assert torch.allclose(errors[k, 0], rss / (300 - torch.trace(hat) - 1) ** 2, rtol=1e-9)


def _planted_readouts(n: int, noise: float, seed: int = 0):
    """Core-like feature maps (T, C, h, w) on a grid half the screen's (H, W) size, and responses of n linear
    readouts each reading all C channels at one screen pixel (bilinearly, as a Gaussian readout) + noise."""
    gen = torch.Generator().manual_seed(seed)
    features = torch.nn.functional.avg_pool2d(torch.randn(1000, 8, H // 2, W // 2, generator=gen), 3, 1, 1)
    screen = torch.nn.functional.interpolate(features, size=(H, W), mode="bilinear", align_corners=True)
    cx, cy = torch.randint(3, W - 3, (n,), generator=gen), torch.randint(3, H - 3, (n,), generator=gen)
    drive = (screen[:, :, cy, cx].permute(0, 2, 1) * torch.randn(n, 8, generator=gen)).sum(-1)
    responses = drive + noise * drive.std(0) * torch.randn(1000, n, generator=gen)
    return features, screen, np.stack([cx.numpy(), cy.numpy()], 1), responses.numpy()


def test_the_ridge_position_search_finds_readouts_that_no_single_channel_reveals():
    features, screen, centres, responses = _planted_readouts(60, noise=3.0)
    scores = ridge_score_maps(features, responses, (H, W))
    assert scores.shape == (60, H, W) and float(scores.max()) <= 1
    found = centres_from_scores(scores)
    error = np.linalg.norm(found.centres_px - centres, axis=1)
    single = centres_from_maps([screen[:, c] for c in range(8)], responses)
    assert np.median(error) < 0.75
    assert np.median(error) < 0.75 * np.median(np.linalg.norm(single.centres_px - centres, axis=1))
    # the strength is the held-out variance explained: the planted fraction is 1 / (1 + 3^2) = 0.1
    assert 0.05 < np.median(found.strength) < 0.12


def test_the_ridge_position_search_finds_nothing_in_noise():
    features, _, _, responses = _planted_readouts(20, noise=0.0)
    noise = np.random.default_rng(0).normal(size=responses.shape)
    assert float(ridge_score_maps(features, noise, (H, W)).max()) < 0.03


def test_the_second_pass_takes_the_peak_near_the_retinotopic_map():
    scores = torch.zeros(1, H, W)
    scores[0, 3, 30], scores[0, 12, 10] = 0.2, 0.1  # a far (noise) peak and a weaker one near the map
    near_map = torch.tensor([[10 / (W - 1) * 2 - 1, 11 / (H - 1) * 2 - 1]])  # grid units, 1 px from (10, 12)
    assert np.allclose(centres_from_scores(scores).centres_px, [[30, 3]])
    found = centres_from_scores(scores_near(scores, near_map, 4.0))
    assert np.allclose(found.centres_px, [[10, 12]]) and np.isclose(found.strength[0], 0.1)


def _readout(position: str, coords: torch.Tensor, scatter: bool = False) -> GaussianReadout:
    return GaussianReadout(len(coords), 8, coords_um=coords, position=position, scatter=scatter,
                           image_shape=(H, W), position_init="rf_map")


def _grid_to_px(mu: torch.Tensor) -> np.ndarray:
    return ((mu + 1) / 2 * torch.tensor([W - 1.0, H - 1.0])).numpy()


def test_cortical_positions_start_on_the_fitted_map_plus_scatter():
    rng = np.random.default_rng(2)
    coords = torch.tensor(rng.uniform(0, 500, size=(60, 3)), dtype=torch.float32)
    # An affine retinotopic map (rotated, scaled) plus 1 px scatter, one gross outlier.
    c = coords.numpy()
    on_map = np.stack([8 + 0.04 * c[:, 0] + 0.01 * c[:, 1], 4 + 0.03 * c[:, 1] - 0.005 * c[:, 0]], 1)
    centres = on_map + rng.normal(0, 1.0, size=on_map.shape)
    centres[0] = [W - 3.0, 2.0]
    strength = torch.full((60,), 0.3)
    with_scatter = _readout("cortical", coords, scatter=True)
    with_scatter.init_positions(torch.tensor(centres), strength)
    with torch.no_grad():
        px = _grid_to_px(with_scatter.positions())
    at_centre = np.linalg.norm(px - centres, axis=1) < 0.05
    assert at_centre[1:].mean() > 0.9  # all but the few beyond 2.5 robust SDs keep their own scatter
    assert np.linalg.norm(px[0] - on_map[0]) < 1.5  # the outlier starts on the map, not at its estimate
    map_only = _readout("cortical", coords)
    map_only.init_positions(torch.tensor(centres), strength)
    with torch.no_grad():
        px = _grid_to_px(map_only.positions())
    assert np.median(np.linalg.norm(px - on_map, axis=1)) < 0.5


def test_learned_positions_start_at_the_centres():
    coords = torch.rand(5, 3) * 100
    readout = _readout("learned", coords)
    centres = torch.tensor([[3.0, 4.0], [10.0, 20.0], [20.0, 12.0], [39.0, 0.0], [0.0, 23.0]])
    readout.init_positions(centres, torch.ones(5))
    np.testing.assert_allclose(_grid_to_px(readout.positions().detach()), centres.numpy(), atol=1.0)


def test_video_samples_pair_frames_with_later_responses(tmp_path):
    from neurofit.data import write_store

    ds, _ = tiny_recording("v0", n_neurons=5, n_train=6, video_frames=12)
    store = write_store(tmp_path / "v.zarr", {"v0": ds})
    dm = NeuralDataModule(store, batch_size=2)
    dm.prepare_specs()
    stim, resp = mapping_samples(dm.recordings["v0"], max_samples=10_000, lag_frames=3)
    assert stim.shape == (6 * 9, 8, 10) and resp.shape == (6 * 9, 5)
    train = dm.recordings["v0"].read(dm.recordings["v0"].trials("train"))
    np.testing.assert_allclose(resp[0], train["responses"][0, 1:4].mean(0), rtol=1e-5)
    np.testing.assert_allclose(stim[0], train["stimulus"][0, 0])


def test_init_readouts_only_touches_configured_readouts(tiny_store):
    from neurofit.config import load_config
    from neurofit.training.module import EncoderModule

    cfg = load_config("configs/default.yaml", ["model.readout.position_init=rf_map", "model.core.channels=4",
                                               "model.core.layers=1"])
    dm = NeuralDataModule(tiny_store, batch_size=4)
    module = EncoderModule(cfg, [s.to_dict() for s in dm.prepare_specs()])
    before = {k: v.clone() for k, v in module.encoder.readouts["m0"].state_dict().items()}
    started = init_readouts(module.encoder, dm.recordings)
    assert set(started) == {"m0", "m1"} and all(set(v) == {"strength"} for v in started.values())
    after = module.encoder.readouts["m0"].state_dict()
    assert not torch.equal(before["affine.weight"], after["affine.weight"])
    assert torch.equal(before["embedding"], after["embedding"])
