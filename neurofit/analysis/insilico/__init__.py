"""In-silico experiments on fitted encoders (``neurofit insilico``): most exciting inputs (``mei``),
gradient and white-noise receptive fields (``rf``), grating tuning (``tuning``), run per model by
``experiment`` on a ``probe`` of the model, scored against the simulator's planted truth (``truth``),
summarised (``summary``) and written (``outputs``, ``figures``) by ``pipeline``; defaults in ``settings``."""
