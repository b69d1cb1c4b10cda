"""One tensor's health, as every checkpoint reader reports it."""

from __future__ import annotations

from dataclasses import dataclass

TORCH_HINT = "install the optional extra: pip install 'forensics[torch]'"


@dataclass(frozen=True)
class TensorStats:
    """One tensor's health."""

    name: str
    dtype: str
    shape: tuple[int, ...]
    nan: int
    inf: int
    minimum: float
    maximum: float
    absmax: float
    norm: float

    @property
    def finite(self) -> bool:
        return self.nan == 0 and self.inf == 0
