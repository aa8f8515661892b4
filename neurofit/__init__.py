"""neurofit: fit predictive models to recorded neural activity."""

from neurofit.errors import ConfigError, DataError, NeurofitError

__version__ = "0.1.0"

__all__ = ["ConfigError", "DataError", "NeurofitError", "__version__"]
