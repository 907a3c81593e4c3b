"""How to compress: the rate–distortion settings as one value, checked in the library's own terms.

Every compress entry point (``Codec.compress_asset``, ``compress_points``, ``compress_asset``,
``compress_file``, the server) takes a ``CompressOptions`` (or its fields as keywords, which build
one), so a new setting is one field here rather than one more argument in six signatures. A bad
value raises ``OptionError``, which names the field; the CLI turns the field into its flag
(``--min-quality``), the library and the server keep the field's name.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields, replace

from squeeze3d.codec import DEFAULT_DTYPE, DEFAULT_EFFORT, DEFAULT_MIN_QUALITY_DB, DEFAULT_QUANT
from squeeze3d.codec.quantise import DTYPE_CHOICES, QUANT_CHOICES
from squeeze3d.errors import UserError


class OptionError(UserError):
    """A compress setting the codec cannot use: ``option`` (the field) and what is wrong with it."""

    def __init__(self, option: str, detail: str):
        self.option, self.detail = option, detail
        super().__init__(f"{option} {detail}")

    def as_flag(self) -> str:
        """The message with the field spelt as its command-line flag."""
        return f"--{self.option.replace('_', '-')} {self.detail}"


@dataclass(frozen=True)
class CompressOptions:
    dtype: str | None = DEFAULT_DTYPE
    """Code payload (``fixed``, ``f16``, ``f32``, ``int8``); None: the model's own rate ladder."""
    quant: str = DEFAULT_QUANT
    """int8 only: ``per_vector`` or ``per_group`` scales."""
    min_quality: float | None = DEFAULT_MIN_QUALITY_DB
    """Quality floor in dB of the kind's metric: the smallest file meeting it is written. None: no
    gate (the model's rung is written unmeasured)."""
    target_bytes: int | None = None
    """Instead of a floor: the best quality whose file fits in this many bytes."""
    bits: int | None = None
    """Fixed-range codes: store the code at this many bits per number."""
    effort: int | None = None
    """Test-time refinement steps (None: ``DEFAULT_EFFORT``; 0: off)."""
    prefix: int | None = None
    """Nested-code models: store only this many code numbers."""
    classical: str | None = None
    """The kind's classical codec by name (point clouds: ``octree`` or ``draco``); None: its default."""

    @classmethod
    def of(cls, options: CompressOptions | None = None, **settings) -> CompressOptions:
        """``options`` as given, or one built from keyword settings (not both)."""
        if options is not None and settings:
            raise TypeError(f"give CompressOptions or its fields, not both ({', '.join(settings)})")
        if options is not None:
            return options
        unknown = set(settings) - {f.name for f in fields(cls)}
        if unknown:
            raise TypeError(f"unknown compress setting(s): {', '.join(sorted(unknown))}")
        return cls(**settings)

    @property
    def steps(self) -> int:
        """Refinement steps to run."""
        return DEFAULT_EFFORT if self.effort is None else int(self.effort)

    @property
    def gated(self) -> bool:
        """Whether candidates are measured (a floor or a byte target)."""
        return self.min_quality is not None or self.target_bytes is not None

    def with_(self, **changes) -> CompressOptions:
        return replace(self, **changes)

    def validate(self) -> CompressOptions:
        """The options, or ``OptionError`` for the first bad field (what any model would refuse;
        what depends on the model, such as a prefix it does not store, is checked by the codec)."""
        if self.effort is not None and int(self.effort) < 0:
            raise OptionError("effort", f"must be >= 0 refinement steps, got {self.effort}")
        if self.dtype is not None and self.dtype not in DTYPE_CHOICES:
            raise OptionError("dtype", f"{self.dtype!r} is unknown; choose one of {', '.join(DTYPE_CHOICES)}")
        if self.quant not in QUANT_CHOICES and not (self.dtype not in (None, "int8") and self.quant == "none"):
            raise OptionError("quant", f"{self.quant!r} is unknown; choose one of {', '.join(QUANT_CHOICES)}")
        if self.min_quality is not None and not math.isfinite(float(self.min_quality)):
            raise OptionError("min_quality", f"must be a finite number of dB, got {self.min_quality}")
        if self.target_bytes is not None and int(self.target_bytes) < 1:
            raise OptionError("target_bytes", f"must be a positive number of bytes, got {self.target_bytes}")
        if self.bits is not None and not 1 <= int(self.bits) <= 16:
            raise OptionError("bits", f"must be 1..16 bits per code number, got {self.bits}")
        return self
