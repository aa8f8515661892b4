"""The learning curve of a fit, shared by the fitting methods and written to ``RUN/metrics.json``."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class FitHistory:
    """One entry per training run (``rls``), evaluation epoch (``bptt``) or solve (``ridge``).

    Attributes:
        method: the fitting method.
        step: run or epoch number of each entry.
        pvar: pVar of the model's trajectory at that entry (rls: the training run's own trajectory, as CURBD
            reports; bptt and ridge: a free run over every trial).
        chi2: sum over samples of the mean squared drive error at that entry.
        wall_s: seconds since the fit started.
        loss: bptt training loss (mean squared rate error) per entry; empty for the other methods.
    """

    method: str
    step: list[int] = field(default_factory=list)
    pvar: list[float] = field(default_factory=list)
    chi2: list[float] = field(default_factory=list)
    wall_s: list[float] = field(default_factory=list)
    loss: list[float] = field(default_factory=list)

    def add(self, step: int, pvar: float, chi2: float, wall_s: float, loss: float | None = None) -> None:
        """Append one entry."""
        self.step.append(int(step))
        self.pvar.append(float(pvar))
        self.chi2.append(float(chi2))
        self.wall_s.append(float(wall_s))
        if loss is not None:
            self.loss.append(float(loss))

    def time_to(self, pvar: float) -> float | None:
        """Seconds until an entry first reached ``pvar`` (None if never)."""
        return next((t for p, t in zip(self.pvar, self.wall_s) if p >= pvar), None)

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly form."""
        return asdict(self)
