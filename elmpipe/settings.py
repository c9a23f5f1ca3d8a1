"""The base of every typed config section, so that all of them validate alike."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class StrictModel(BaseModel):
    """Unknown keys are errors (a typo never passes as a default), values are frozen once
    validated, and a number must be finite: `inf` and `nan` are valid YAML and float syntax, and
    let through they ended in tracebacks (`--duration-ms inf`) or in NaN losses with exit 0
    (`--lr inf`)."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)
