"""Data-constrained multi-region RNNs (CURBD, Perich & Rajan): one model unit per recorded neuron, fitted by
recursive least squares (``rls``), gradient descent through time (``bptt``) or direct least squares
(``ridge``); currents decomposed by (target region, source region) and sign.

Python API::

    from neurofit.rnn import load_config, load_rnn_data, fit, decompose
    data = load_rnn_data("REGIONS.zarr")                     # or an npz with rates, regions, dt
    outcome = fit(data, load_config("configs/rnn_curbd.yaml"), device="cpu")
    currents = decompose(outcome.model, outcome.rates, outcome.data.exog)
"""

from neurofit.rnn.config import FitConfig, load_config
from neurofit.rnn.currents import decompose
from neurofit.rnn.data import RNNData, load_rnn_data
from neurofit.rnn.fit import FitOutcome, fit
from neurofit.rnn.model import DataConstrainedRNN, load_model, save_model

__all__ = ["DataConstrainedRNN", "FitConfig", "FitOutcome", "RNNData", "decompose", "fit", "load_config",
           "load_model", "load_rnn_data", "save_model"]
