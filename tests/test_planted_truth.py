"""Planted-truth tests for neuron interactions (issue 4 item 5): simulate mouse V1 with known lateral coupling
and normalisation pools, fit interaction models through ``neurofit fit``, map them with ``neurofit attention``
and compare with the truth.

What a map that "falls off with cortical distance" proves depends on the model. The shipped configs build a
preference for near neighbours in before any training (attention's distance bias starts at alpha = 0.1 per
(100 um)^2; the normalisation pools include Gaussian distance pools), and on this simulator their untrained
maps fall off with distance *more* steeply than trained ones (150 neurons, 2000 images, 10 epochs, seed 0:
attention rho -0.96 untrained, -0.57 trained, although the learned alpha doubles; pools -0.95 and -0.97).
Hence two tests:

* ``test_planted_structure_is_reported_end_to_end`` (fast): the shipped attention + normalisation config,
  one short epoch. Its maps are local by construction, so this checks the pipeline, not learning: maps,
  positions and truth reach the analysis in the same neuron order and orientation, and the truth comparison
  uses meaningful references (against the signed coupling, which most pairs see as weak long-range
  inhibition, a perfectly local map scored negative).
* ``test_attention_learns_cortical_locality`` (slow): attention without the distance bias, so locality can
  only come from training, with features and drives in its values and one shared gate (the shipped layer
  reads drives only and gates per neuron, which predicts as well as the plain model but, in this small
  setting, learned little locality for seed 0: rho -0.03 -> -0.11). Measured (untrained -> trained rho vs
  distance; rho vs |J|; signed coupling vs signed J, against the best monotone function of distance),
  2026-11-29: seed 0 -0.03 -> -0.73, |J| 0.00 -> 0.52, signed 0.20 (distance alone 0.10); seed 2
  +0.12 -> -0.74, -0.09 -> 0.55, signed 0.41 (0.16).

The locality learned is not specific to the planted interactions: with coupling and lateral normalisation
switched off (``coupling_strength=0, norm_length_um=1``, same neurons) the same fits end at rho -0.60, +0.24
and -0.59. Neighbours see the same part of the screen, so their drives are informative about a neuron's
response whether or not they are coupled, and the simulator's interactions act on noise-free drives, i.e.
they are a function of the stimulus that the core and readout can also represent. So the truth correlation
asserted here is the one that cortical distance alone explains (``distance_only_rho``), not a recovery of the
coupling beyond it. The divisive-normalisation layer learned too little at this scale to test: in 10 epochs
its pool gains moved from 0.05 to ~0.06 (measured while its exponent still started at p = 1 on the saturated
edge of its range; the range is now [0.5, 3], so p can move).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from neurofit.analysis.attention import SUMMARY_FILE
from neurofit.cli import main
from neurofit.data.simulate.v1 import simulate_v1_store

CONFIGS = Path(__file__).resolve().parents[1] / "configs"

#: Shared simulator settings: one mouse, 40 test images shown 4 times (the maps average over them).
TEST_STIMULI = {"test_images": 40, "test_repeats": 4}
#: Attention whose only knowledge of position is a Fourier code feeding queries and keys (no distance bias).
ATTENTION_WITHOUT_LOCALITY = ("model.interactions=[{name: attention, heads: 4, head_dim: 16, "
                              "fourier_features: 16, locality: false, values: drive+features, "
                              "neuron_gate: false}]")


def _fit_and_map(store: Path, run: Path, config: str, seed: int, epochs: int, overrides: list[str],
                 permutations: int = 200) -> dict:
    """``neurofit fit`` then ``neurofit attention`` in-process; returns the recording's JSON entry."""
    sets = [arg for override in overrides for arg in ("--set", override)]
    assert main(["fit", "--data", str(store), "--config", str(CONFIGS / f"{config}.yaml"), "--out", str(run),
                 "--seed", str(seed), "--max-epochs", str(epochs), *sets]) == 0
    assert main(["attention", str(run), "--permutations", str(permutations)]) == 0
    return json.loads((run / "attention" / SUMMARY_FILE).read_text())["mouse0"]


def test_planted_structure_is_reported_end_to_end(tmp_path):
    store = simulate_v1_store(tmp_path / "v1.zarr", recordings=1, neurons=100, seed=0, train_images=300,
                              validation_images=60, **TEST_STIMULI)
    entry = _fit_and_map(store, tmp_path / "run", "attention_normalization", seed=0, epochs=1,
                         overrides=["model.core.channels=8", "model.core.layers=1"], permutations=100)
    pools = entry["pools_vs_distance"]
    for summary, reference in ((entry, "coupling_abs"), (pools, "norm_pool")):
        assert summary["spearman_rho"] < -0.5 and summary["p_value"] < 0.05
        truth = summary["truth_correlation"]
        assert truth["reference"] == reference
        assert truth["rho"] > 0.3 and truth["p_value"] < 0.05
        assert set(summary["truth_correlations"]) == {"coupling_abs", "coupling_excitatory",
                                                      "coupling_inhibitory", "norm_pool"}
        # The prior at work: before training the map is as local (the distance bias / distance pools).
        assert summary["untrained"]["spearman_rho"] < -0.5
    assert pools["truth_correlation"]["rho"] > 0.8
    # Attention's values are the drives, so it also applies a signed coupling, scored against signed J.
    coupling = entry["coupling_vs_distance"]
    assert coupling["truth_correlation"]["reference"] == "coupling"
    assert set(coupling["truth_correlations"]) == {"coupling"}


@pytest.mark.slow
@pytest.mark.parametrize("seed", [0, 2])  # seed 2 learned the least of seeds 0-2 with an earlier layer
def test_attention_learns_cortical_locality(tmp_path, seed):
    # The high-SNR statistics these thresholds were set on; calibrated noise hides the signed coupling.
    store = simulate_v1_store(tmp_path / "v1.zarr", recordings=1, neurons=150, seed=seed, train_images=2000,
                              validation_images=200, preset="high-snr", **TEST_STIMULI)
    entry = _fit_and_map(store, tmp_path / "run", "attention", seed=seed, epochs=10,
                         overrides=[ATTENTION_WITHOUT_LOCALITY])
    untrained, truth = entry["untrained"], entry["truth_correlation"]
    assert entry["spearman_rho"] < 0 and entry["p_value"] < 0.05
    # Learned, not inherited: markedly more local than the same model before training (by 0.40-0.46).
    assert entry["spearman_rho"] < untrained["spearman_rho"] - 0.2
    assert truth["reference"] == "coupling_abs"
    assert truth["rho"] > 0.1 and truth["p_value"] < 0.05
    assert truth["rho"] > untrained["truth_correlation"]["rho"] + 0.15
    # The signed coupling of drives recovers J's sign structure beyond any monotone function of distance.
    signed = entry["coupling_vs_distance"]["truth_correlation"]
    assert signed["p_value"] < 0.05 and signed["rho"] > abs(signed["distance_only_rho"]) + 0.05


# --- issue #22: interaction maps against planted coupling, beside distance, tuning and the untrained model ---

#: The scenario settings of scripts/benchmark_coupling.py (configs/benchmarks/coupling.yaml).
COUPLING_BENCHMARK = yaml.safe_load((CONFIGS / "benchmarks" / "coupling.yaml").read_text())
CONTEXT_MAPS = ("context_attention_vs_distance", "context_coupling_vs_distance")


def _check_verdict(baselines: dict) -> None:
    """The verdict claims exactly what the partial correlation supports, and says so in its line."""
    partial = baselines["partial_correlation"]
    supported = partial["rho"] is not None and partial["rho"] > 0 and partial["p_value"] < 0.01
    assert baselines["beyond_distance"] == supported
    assert baselines["verdict"].startswith(f"beyond distance: {'yes' if supported else 'no'} (partial rho")


@pytest.mark.parametrize("structure", ["distance", "tuning"])
def test_every_map_is_scored_beside_its_baselines(tmp_path, structure):
    store = simulate_v1_store(tmp_path / "v1.zarr", recordings=1, neurons=80, seed=0, train_images=300,
                              validation_images=60, coupling_structure=structure, **TEST_STIMULI)
    entry = _fit_and_map(store, tmp_path / "run", "attention_context", seed=0, epochs=1,
                         overrides=["model.core.channels=8", "model.core.layers=1"], permutations=100)
    assert entry["planted_coupling"]["structure"] == structure
    for key in CONTEXT_MAPS:
        baselines = entry[key]["baselines"]
        assert set(baselines["scores"]) == {"map", "distance_only", "distance_profile", "signal_correlation",
                                            "untrained"}
        assert baselines["partial_correlation"]["controls"] == ["distance", "signal_correlation"]
        _check_verdict(baselines)
        distance_auc = baselines["scores"]["distance_only"]["auc"]
        # (a) any map that falls off with distance ranks the planted pairs; (b) distance says nothing.
        assert distance_auc > 0.9 if structure == "distance" else abs(distance_auc - 0.5) < 0.05
        # One epoch from gates at 0 learns next to nothing: no claim beyond distance.
        assert not baselines["beyond_distance"]


def _benchmark_store(tmp_path: Path, scenario: str) -> Path:
    sim = dict(COUPLING_BENCHMARK["simulator"])
    preset, neurons = sim.pop("preset"), sim.pop("neurons")
    return simulate_v1_store(tmp_path / f"{scenario}.zarr", recordings=1, neurons=neurons, seed=0, preset=preset,
                             **sim, **COUPLING_BENCHMARK["scenarios"][scenario])


def _benchmark_fit(tmp_path: Path, scenario: str) -> tuple[dict, dict]:
    run = tmp_path / "run"
    fit = COUPLING_BENCHMARK["fit"]
    entry = _fit_and_map(_benchmark_store(tmp_path, scenario), run, "attention_context", seed=fit["seed"],
                         epochs=fit["max_epochs"], overrides=fit["overrides"], permutations=500)
    assert main(["evaluate", str(run), "--no-figures"]) == 0
    return entry, json.loads((run / "metrics.json").read_text())["with_population_context"]["mean"]


@pytest.mark.slow
def test_context_map_recovers_like_to_like_coupling_beyond_distance_and_tuning(tmp_path):
    """(b) with fluctuations through the coupling, the README's benchmark row (measured: AUC 0.64 vs distance
    0.50, rho 0.057 vs -0.002, partial rho 0.06 at p = 0.002, +0.059 single-trial r with context)."""
    entry, context = _benchmark_fit(tmp_path, "tuning_through")
    for key in CONTEXT_MAPS:
        baselines = entry[key]["baselines"]
        scores = baselines["scores"]
        assert scores["map"]["auc"] >= scores["distance_only"]["auc"] + 0.1
        assert scores["map"]["spearman"] > scores["distance_only"]["spearman"]
        assert baselines["partial_correlation"]["rho"] > 0 and baselines["partial_correlation"]["p_value"] < 0.01
        _check_verdict(baselines)
    assert context["gain"] > 0.02


@pytest.mark.slow
def test_on_distance_coupling_the_verdict_claims_no_more_than_the_scores(tmp_path):
    """(a) dense distance-dependent coupling, fluctuations through it: whatever the map learned, the verdict
    follows the partial correlation that controls for distance, not the raw scores, which any local map
    shares with distance alone."""
    entry, _ = _benchmark_fit(tmp_path, "distance_through")
    for key in CONTEXT_MAPS:
        baselines = entry[key]["baselines"]
        _check_verdict(baselines)
        assert baselines["scores"]["distance_only"]["auc"] > 0.9
