"""Biophysical parameter sets kept as data: regions, uniform values and distance rules.

A parameter set says, per region (soma, axon, basal, apical), which mechanisms are inserted with
which values, plus rules that make a parameter depend on the path distance to each segment. How
that distance is measured is part of the set (:class:`DistanceConvention`): from which origin, and
where on the last segment of a section — the reference models fix both, and a replica must follow
them to reproduce their conductances segment by segment. Rules are written relative to the cell's
own longest apical path ``l_max``, so one set applies to any morphology; see
``parameters/hay-5b.yaml`` for the set behind NeuronIO.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from elmpipe.errors import InputError

if TYPE_CHECKING:
    from simulations.cell import Cell

PARAMETER_DIR = Path(__file__).parent / "parameters"
DEFAULT_PARAMETER_SET = "hay-5b"

Region = Literal["soma", "axon", "basal", "apical"]


class ParameterSetError(InputError):
    """A parameter-set file is missing, unreadable or invalid."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Passive(_Strict):
    cm: float = Field(gt=0, description="membrane capacitance (uF/cm2)")
    g_pas: float = Field(ge=0, description="leak conductance (S/cm2)")
    e_pas: float = Field(description="leak reversal (mV)")
    Ra: float = Field(gt=0, description="axial resistivity (ohm cm)")


class RegionParameters(_Strict):
    passive: Passive
    ions: dict[Literal["ek", "ena"], float] = Field(default_factory=dict)
    mechanisms: dict[str, dict[str, float]] = Field(default_factory=dict)


class ExponentialRule(_Strict):
    """g = [a + c exp(b (min(d, d_max) - x0))] scale with d = distance / l_max."""

    kind: Literal["exponential"]
    region: Region
    mechanism: str
    parameter: str
    a: float
    b: float
    c: float
    x0: float = 0.0
    d_max: float = math.inf
    scale: float = 1.0

    def at(self, distance: float, l_max: float, reference_l_max: float) -> float:
        d = min(distance / l_max, self.d_max)
        return (self.a + self.c * math.exp(self.b * (d - self.x0))) * self.scale


class ZoneRule(_Strict):
    """value*scale inside (start, end), outside_factor times that elsewhere.

    start and end are micrometres on the reference cell and scale with l_max / reference_l_max.
    """

    kind: Literal["zone"]
    region: Region
    mechanism: str
    parameter: str
    value: float
    scale: float = 1.0
    start: float
    end: float
    outside_factor: float = 0.0

    @model_validator(mode="after")
    def _ordered(self) -> ZoneRule:
        if not self.start < self.end:
            raise ValueError(f"zone start ({self.start}) must be below its end ({self.end})")
        return self

    def at(self, distance: float, l_max: float, reference_l_max: float) -> float:
        stretch = l_max / reference_l_max
        inside = self.start * stretch < distance < self.end * stretch
        return self.value * self.scale * (1.0 if inside else self.outside_factor)


Rule = Annotated[ExponentialRule | ZoneRule, Field(discriminator="kind")]


class DistanceConvention(_Strict):
    """Where distance rules measure from, and at which point of each segment.

    ``origin``: ``soma_0`` — the soma's 0-end; ``apical_root`` — the 0-end of the main apical
    trunk's first section, i.e. where the apical tree leaves the soma (Hay et al.'s templates).
    ``last_segment``: ``centre`` — every segment takes the value at its centre; ``section_end`` —
    the last segment of each section takes the value at the section's 1-end, as NEURON's
    ``for (x)`` assignment leaves it (it visits x = 1 after the centres).
    """

    origin: Literal["soma_0", "apical_root"] = "soma_0"
    last_segment: Literal["centre", "section_end"] = "centre"


class ParameterSet(_Strict):
    name: str
    description: str = ""
    reference_l_max: float = Field(gt=0, description="l_max (um) of the cell the set was fit on")
    distance: DistanceConvention = DistanceConvention()
    regions: dict[Region, RegionParameters]
    rules: list[Rule] = Field(default_factory=list)

    @model_validator(mode="after")
    def _complete(self) -> ParameterSet:
        missing = {"soma", "axon", "basal", "apical"} - set(self.regions)
        if missing:
            raise ValueError(f"regions missing: {', '.join(sorted(missing))}")
        for rule in self.rules:
            inserted = self.regions[rule.region].mechanisms
            if rule.mechanism not in inserted and rule.mechanism != "pas":
                raise ValueError(
                    f"rule for {rule.mechanism}.{rule.parameter} targets region {rule.region!r}, "
                    f"where {rule.mechanism} is not inserted"
                )
        return self

    def mechanisms(self) -> set[str]:
        return {m for region in self.regions.values() for m in region.mechanisms}


def load_parameter_set(source: str | Path | ParameterSet | None = None) -> ParameterSet:
    """Load a parameter set by bundled name (``hay-5b``) or from a YAML file path."""
    if isinstance(source, ParameterSet):
        return source
    source = source or DEFAULT_PARAMETER_SET
    path = Path(source)
    if not path.suffix:  # a bundled name
        path = PARAMETER_DIR / f"{source}.yaml"
        if not path.exists():
            bundled = ", ".join(sorted(p.stem for p in PARAMETER_DIR.glob("*.yaml")))
            raise ParameterSetError(f"unknown parameter set {source!r} (bundled: {bundled})")
    if not path.exists():
        raise ParameterSetError(f"parameter-set file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ParameterSetError(f"{path} is not valid YAML: {exc}") from exc
    try:
        return ParameterSet.model_validate(data)
    except ValidationError as exc:
        raise ParameterSetError(f"invalid parameter set {path}:\n{exc}") from exc


def region_sections(cell: Cell) -> dict[str, list]:
    return {"soma": cell.soma, "axon": cell.axon, "basal": cell.dend, "apical": cell.apic}


def density_mechanisms() -> dict[str, set[str]]:
    """Density mechanisms loaded in NEURON, each with its settable parameter names."""
    from simulations._neuron import hoc

    h = hoc()
    kinds = h.MechanismType(0)
    name, param = h.ref(""), h.ref("")
    known: dict[str, set[str]] = {}
    for i in range(int(kinds.count())):
        kinds.select(i)
        kinds.selected(name)
        params = h.MechanismStandard(name[0], 1)  # 1: PARAMETERs (what a set may change)
        names = set()
        for j in range(int(params.count())):
            params.name(param, j)
            names.add(param[0].removesuffix(f"_{name[0]}"))
        known[name[0]] = names
    return known


def _check_names(params: ParameterSet) -> None:
    known = density_mechanisms()
    for region, values in params.regions.items():
        for mechanism, settings in values.mechanisms.items():
            if mechanism not in known:
                raise ParameterSetError(
                    f"parameter set {params.name!r}, region {region}: unknown mechanism "
                    f"{mechanism!r} (loaded: {', '.join(sorted(known))})"
                )
            unknown = set(settings) - known[mechanism]
            if unknown:
                raise ParameterSetError(
                    f"parameter set {params.name!r}, region {region}: {mechanism} has no "
                    f"parameter {', '.join(sorted(unknown))} (it has "
                    f"{', '.join(sorted(known[mechanism]))})"
                )
    for rule in params.rules:
        if rule.parameter not in known.get(rule.mechanism, set()):
            raise ParameterSetError(
                f"parameter set {params.name!r}: rule targets {rule.mechanism}.{rule.parameter}, "
                "which does not exist"
            )


def apply_parameter_set(cell: Cell, params: ParameterSet) -> None:
    """Insert mechanisms and set every parameter of ``params`` on ``cell``'s sections."""
    from simulations._neuron import hoc

    h = hoc()
    _check_names(params)
    sections = region_sections(cell)
    for region, values in params.regions.items():
        for sec in sections[region]:
            sec.insert("pas")
            sec.cm = values.passive.cm
            sec.Ra = values.passive.Ra
            for seg in sec:
                seg.pas.g = values.passive.g_pas
                seg.pas.e = values.passive.e_pas
            for mechanism, settings in values.mechanisms.items():
                sec.insert(mechanism)
                for seg in sec:
                    mech = getattr(seg, mechanism)
                    for name, value in settings.items():
                        setattr(mech, name, value)
            for ion_param, value in values.ions.items():
                ion = {"ek": "k_ion", "ena": "na_ion"}[ion_param]
                if h.ismembrane(ion, sec=sec):
                    setattr(sec, ion_param, value)
    for rule in params.rules:
        for sec in sections[rule.region]:
            for seg, distance in rule_distances(cell, sec, params.distance):
                value = rule.at(distance, cell.l_max, params.reference_l_max)
                setattr(getattr(seg, rule.mechanism), rule.parameter, value)


def rule_distances(cell: Cell, sec: Any, convention: DistanceConvention) -> list:
    """(segment, distance in µm) of every segment of ``sec``, as ``convention`` measures it."""
    from simulations._neuron import hoc

    h = hoc()
    origin = cell.apical_origin() if convention.origin == "apical_root" else cell.soma[0](0)
    segments = list(sec)
    out = []
    for i, seg in enumerate(segments):
        last = i == len(segments) - 1
        where = sec(1.0) if last and convention.last_segment == "section_end" else seg
        out.append((seg, float(h.distance(origin, where))))
    return out
