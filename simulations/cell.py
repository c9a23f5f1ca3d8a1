"""The L5PC cell: sections from a morphology, the NeuronIO discretisation, biophysics, and the
ordered table of dendritic segments that defines the input-channel layout of every dataset.

Build order (as for the cell behind NeuronIO): import the morphology → nseg = 1 + 2·int(L/40 µm)
→ replace the reconstructed axon by two 30 µm × 1 µm sections → apply the parameter set.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

import numpy as np
from pydantic import Field, model_validator

from elmpipe.settings import StrictModel
from simulations._neuron import hoc
from simulations.biophysics import ParameterSet, apply_parameter_set, load_parameter_set
from simulations.mechanisms import load_mechanisms
from simulations.morphology import (
    MorphologyError,
    check_sections,
    default_morphology_path,
    import_morphology,
)
from simulations.template import (
    CellModelError,
    LabSynapse,
    TemplateModel,
    check_in_child,
    checked_before,
    instantiate,
)

if TYPE_CHECKING:
    import weakref

    from simulations.synapses import Synapses

#: The nexus recording site sits on the main apical path at this fraction of l_max; on the Hay
#: cell (l_max 1300.5 µm) that is the compartment of apic[50](0.9), 690 µm from soma(0), where
#: NeuronIO recorded its "nexus" voltage and where the Ca hot zone begins.
NEXUS_FRACTION = 690.0 / 1300.5

AXON_SECTION_LENGTH = 30.0  # µm, each of the two replacement axon sections
AXON_DIAMETER = 1.0  # µm
MAX_NSEG = 32767  # NEURON's limit on segments per section

_SITE = re.compile(r"^\s*(.+?)\((\d*\.?\d+)\)\s*$")


@dataclass(frozen=True)
class Site:
    """A point on the cell: ``section(x)`` plus where it is."""

    section: str
    x: float
    distance: float  # path distance from soma(0), µm
    diam: float  # µm

    def __str__(self) -> str:
        return f"{self.section}({self.x:.3g}) at {self.distance:.1f} µm"


@dataclass(frozen=True)
class SegmentTable:
    """Dendritic segments in input-row order: basal sections, then apical; increasing x.

    Row i carries excitatory input channel i and inhibitory channel n + i of every dataset.
    """

    section: np.ndarray  # str, e.g. "dend[3]"
    region: np.ndarray  # str, "basal" | "apical"
    section_index: np.ndarray  # int, index within its region list
    x: np.ndarray  # float, segment centre along the section
    length: np.ndarray  # µm
    area: np.ndarray  # µm²
    diam: np.ndarray  # µm
    distance: np.ndarray  # µm, path distance from soma(0) to the segment centre
    xyz: np.ndarray  # (n, 3) µm, 3-D position of the segment centre (from the morphology)

    def __len__(self) -> int:
        return len(self.x)

    @property
    def n_basal(self) -> int:
        return int(np.sum(self.region == "basal"))

    @property
    def n_apical(self) -> int:
        return int(np.sum(self.region == "apical"))

    def to_dict(self) -> dict[str, list]:
        """Plain lists, for JSON attributes of a dataset."""
        return {f.name: getattr(self, f.name).tolist() for f in fields(self)}


def _point_along(sec: Any, x: float) -> tuple[float, float, float]:
    """3-D position at fraction ``x`` of a section's length, from its traced points."""
    n = int(sec.n3d())
    if n == 0:
        return (np.nan, np.nan, np.nan)
    arc = np.array([sec.arc3d(i) for i in range(n)])
    at = x * arc[-1]

    def along(axis: str) -> float:
        return float(np.interp(at, arc, [getattr(sec, f"{axis}3d")(i) for i in range(n)]))

    return (along("x"), along("y"), along("z"))


class CellSpec(StrictModel):
    """What to build a cell from: enough to rebuild the identical cell in another process.

    Either a morphology with a parameter set over elmpipe's mechanisms, or a lab's own model: a
    NEURON template (``template``, ``name``, ``args``, ``preload``, ``mechanisms``;
    docs/own-model.md), which brings its own geometry, discretisation and biophysics.
    """

    morphology: str | None = Field(None, description="ASC/SWC/H5 path; None: the built-in cell")
    parameters: str = Field("hay-5b", description="bundled parameter-set name or YAML path")
    max_segment_length: float = Field(40.0, gt=0, description="µm, nseg rule")
    nexus: str | None = Field(None, description="explicit nexus site, e.g. 'apic[50](0.9)'")
    apical_trees: list[Annotated[int, Field(ge=0)]] | None = Field(
        None,
        min_length=1,
        description="dendrite trees (numbered in file order) that are apical; None: the tags",
    )
    template: str | None = Field(
        None, description="a lab's cell model: NEURON template file (.hoc or .py)"
    )
    name: str | None = Field(None, description="the template's (or Python class's) name")
    args: list[str | int | float] = Field(
        default_factory=list, description="arguments the template is instantiated with"
    )
    preload: list[str] = Field(
        default_factory=list, description="hoc files the template expects loaded first"
    )
    mechanisms: str | None = Field(
        None, description="folder of the model's .mod files (None: elmpipe's own channels)"
    )
    section_lists: dict[Literal["soma", "basal", "apical", "axon"], str] = Field(
        default_factory=dict,
        description="the instance's attribute holding each region's sections, where the "
        "defaults (somatic/soma, basal/dend, apical/apic, axonal/axon) do not fit",
    )
    synapse_mechanisms: dict[Literal["excitatory", "inhibitory"], LabSynapse] = Field(
        default_factory=dict,
        description="a lab's synapse mechanism (with its parameters) instead of elmpipe's "
        "AmpaNmda / GabaA",
    )

    @model_validator(mode="after")
    def _one_kind_of_model(self) -> CellSpec:
        model_only = ("name", "args", "preload", "mechanisms", "section_lists")
        if self.template is None:
            given = [f for f in model_only if getattr(self, f)]
            if given:
                raise ValueError(f"{', '.join(given)}: only for a template cell (template: PATH)")
            return self
        if self.name is None:
            raise ValueError("template: name the template (name: TemplateName)")
        conflicting = [
            what
            for what, set_ in (
                ("morphology (name the file in args)", self.morphology is not None),
                ("parameters (the template sets its biophysics)", self.parameters != "hay-5b"),
                ("max_segment_length (the template discretises)", self.max_segment_length != 40),
                ("apical_trees (use section_lists)", self.apical_trees is not None),
            )
            if set_
        ]
        if conflicting:
            raise ValueError(f"a template cell takes no {'; no '.join(conflicting)}")
        return self

    def template_model(self) -> TemplateModel | None:
        if self.template is None:
            return None
        assert self.name is not None
        return TemplateModel(
            path=Path(self.template).expanduser(),
            name=self.name,
            args=tuple(self.args),
            preload=tuple(Path(p).expanduser() for p in self.preload),
            mechanisms=None if self.mechanisms is None else Path(self.mechanisms).expanduser(),
            section_lists=tuple(sorted(self.section_lists.items())),
        )

    def absolute(self) -> CellSpec:
        """The same cell with its files named by absolute paths (workers may run elsewhere)."""

        def full(path: str) -> str:
            return str(Path(path).expanduser().resolve())

        update: dict[str, Any] = {}
        if self.morphology is not None:
            update["morphology"] = full(self.morphology)
        if self.template is not None:
            update["template"] = full(self.template)
            update["preload"] = [full(p) for p in self.preload]
            update["args"] = [
                full(a) if isinstance(a, str) and Path(a).expanduser().is_file() else a
                for a in self.args
            ]
        if self.mechanisms is not None:
            update["mechanisms"] = full(self.mechanisms)
        return self.model_copy(update=update)

    def build(self) -> Cell:
        return Cell(
            self.morphology,
            self.parameters,
            max_segment_length=self.max_segment_length,
            nexus=self.nexus,
            apical_trees=self.apical_trees,
            template=self.template_model(),
            synapse_mechanisms={str(k): v for k, v in self.synapse_mechanisms.items()},
        )


class Cell:
    """A layer-5 pyramidal cell ready to simulate.

    Parameters
    ----------
    morphology:
        ASC, SWC or HDF5 (v1, v2) file; ``None`` uses the built-in default cell.
    parameters:
        Parameter-set name (``"hay-5b"``), YAML path, or a :class:`ParameterSet`.
    max_segment_length:
        nseg = 1 + 2·int(L / max_segment_length) for every section (40 µm in NeuronIO).
    nexus:
        Explicit nexus recording site such as ``"apic[50](0.9)"``; by default it is found on the
        main apical path at :data:`NEXUS_FRACTION` of l_max.
    apical_trees:
        Dendrite trees (numbered 0, 1, … in file order) to make apical, every other one basal,
        for files whose tags do not say; ``None`` keeps the file's tags.
    """

    _ids = itertools.count()
    #: the cell's one set of synapses, held weakly (set by :meth:`Synapses.attached`)
    _attached_synapses: weakref.ref[Synapses]

    def __init__(
        self,
        morphology: str | Path | None = None,
        parameters: str | Path | ParameterSet | None = None,
        *,
        max_segment_length: float = 40.0,
        nexus: str | None = None,
        apical_trees: Sequence[int] | None = None,
        template: TemplateModel | None = None,
        synapse_mechanisms: Mapping[str, LabSynapse] | None = None,
    ) -> None:
        if max_segment_length <= 0:
            raise MorphologyError("max_segment_length must be positive")
        self._name = f"L5PC[{next(self._ids)}]"
        self.template = template
        self.template_record: dict[str, Any] | None = None  # a lab's model's, hashed once
        self.synapse_mechanisms = dict(synapse_mechanisms or {})
        self.soma: list = []
        self.dend: list = []
        self.apic: list = []
        self.axon: list = []
        self.all: list = []
        self.apical_trees = None if apical_trees is None else [int(k) for k in apical_trees]
        self.max_segment_length = max_segment_length
        self.parameters: ParameterSet | None = None
        if template is None:
            load_mechanisms()
            self.parameters = load_parameter_set(parameters)
            self._build_from_morphology(Path(morphology or default_morphology_path()).expanduser())
        else:
            self._build_from_template(template)
        self.l_max = self._longest_apical_path()
        if self.parameters is not None:
            apply_parameter_set(self, self.parameters)
        self._by_name = {self.short_name(sec): sec for sec in self.all}
        self.segments = self._segment_table()
        self.nexus = self._site(nexus) if nexus else self._find_nexus()

    def _build_from_morphology(self, path: Path) -> None:
        """Import3d's sections, the nseg rule, NeuronIO's two-section axon."""
        self.morphology_path = path
        import_morphology(self.morphology_path, self, self.apical_trees)
        self.morphology_sha256 = hashlib.sha256(self.morphology_path.read_bytes()).hexdigest()
        for sec in self.all:
            nseg = 1 + 2 * int(sec.L / self.max_segment_length)
            if nseg > MAX_NSEG:
                raise MorphologyError(
                    f"{self.morphology_path}: section {self.short_name(sec)} is {sec.L:.4g} µm "
                    f"long: {nseg} segments of at most {self.max_segment_length:g} µm, more than "
                    f"NEURON's {MAX_NSEG}"
                )
            sec.nseg = nseg
        check_sections(self, self.morphology_path)
        self._replace_axon()
        self.all = [*self.soma, *self.dend, *self.apic, *self.axon]

    def _build_from_template(self, template: TemplateModel) -> None:
        """The lab's instance as it is: its sections, discretisation and biophysics."""
        if not checked_before(template):
            check_in_child(template)
        self._instance, sections = instantiate(template)
        self.template_record = template.record()  # its files exist: instantiate checked them
        if any(sec.n3d() == 0 for region in sections.values() for sec in region):
            hoc().define_shape()  # 3-D points from the topology: every segment gets a position
        self.soma, self.dend = sections["soma"], sections["basal"]
        self.apic, self.axon = sections["apical"], sections["axon"]
        for region in ("soma", "basal", "apical"):
            if not sections[region]:
                raise CellModelError(
                    f"{template.name} (from {template.path}) has no {region} sections: an L5PC "
                    "model needs a soma, basal and apical dendrites"
                )
        self._name = self.soma[0].name().rpartition(".")[0]
        self.morphology_path = template.morphology() or template.path
        self.morphology_sha256 = hashlib.sha256(self.morphology_path.read_bytes()).hexdigest()
        check_sections(self, template.path)
        self.all = [*self.soma, *self.dend, *self.apic, *self.axon]

    def __repr__(self) -> str:
        # Import3d names the sections after this, e.g. "L5PC[0].apic[50]"
        return self._name

    # -- geometry ---------------------------------------------------------------------------

    def _replace_axon(self) -> None:
        h = hoc()
        for sec in self.axon:
            h.delete_section(sec=sec)
        self.axon = []
        parent = self.soma[0](0.5)
        for i in range(2):
            sec = h.Section(name=f"axon[{i}]", cell=self)
            sec.L = AXON_SECTION_LENGTH
            sec.diam = AXON_DIAMETER
            sec.nseg = 1
            sec.connect(parent, 0)
            parent = sec(1)
            self.axon.append(sec)

    def distance(self, seg: Any) -> float:
        """Path distance (µm) from soma(0) to a segment (its centre) or a location."""
        return float(hoc().distance(self.soma[0](0), seg))

    def apical_origin(self) -> Any:
        """Where the apical tree leaves the soma: the 0-end of the main apical trunk."""
        return self.main_apical_path()[0](0)

    def _is_apical(self, sec: Any) -> bool:
        return any(sec == s for s in self.apic)

    def _apical_roots(self) -> list:
        roots = []
        for sec in self.apic:
            parent = sec.parentseg()
            if parent is None or not self._is_apical(parent.sec):
                roots.append(sec)
        return roots

    def _subtree(self, sec: Any) -> list:
        out, stack = [], [sec]
        while stack:
            s = stack.pop()
            out.append(s)
            stack.extend(s.children())
        return out

    def _longest_apical_path(self) -> float:
        """Longest path (µm) from where the apical tree leaves the soma to an apical tip."""
        h = hoc()
        return max(
            h.distance(root(0), sec(1))
            for root in self._apical_roots()
            for sec in self._subtree(root)
        )

    def main_apical_path(self) -> list:
        """Apical sections from the root outward, always into the child with most dendrite."""
        lengths = {}

        def total(sec: Any) -> float:
            key = sec.name()
            if key not in lengths:
                lengths[key] = sec.L + sum(total(c) for c in sec.children())
            return lengths[key]

        path = [max(self._apical_roots(), key=total)]
        while children := list(path[-1].children()):
            path.append(max(children, key=total))
        return path

    def short_name(self, sec: Any) -> str:
        return sec.name().removeprefix(f"{self._name}.") if self._name else sec.name()

    def _segment_table(self) -> SegmentTable:
        rows = []
        for region, sections in (("basal", self.dend), ("apical", self.apic)):
            for index, sec in enumerate(sections):
                for seg in sec:
                    rows.append(
                        (
                            self.short_name(sec),
                            region,
                            index,
                            seg.x,
                            sec.L / sec.nseg,
                            seg.area(),
                            seg.diam,
                            self.distance(seg),
                            _point_along(sec, seg.x),
                        )
                    )
        cols = list(zip(*rows, strict=True))
        return SegmentTable(
            section=np.array(cols[0]),
            region=np.array(cols[1]),
            section_index=np.array(cols[2], dtype=np.int64),
            x=np.array(cols[3], dtype=float),
            length=np.array(cols[4], dtype=float),
            area=np.array(cols[5], dtype=float),
            diam=np.array(cols[6], dtype=float),
            distance=np.array(cols[7], dtype=float),
            xyz=np.array(cols[8], dtype=float).reshape(-1, 3),
        )

    def _find_nexus(self) -> Site:
        target = NEXUS_FRACTION * self.l_max
        best = min(
            ((sec, seg) for sec in self.main_apical_path() for seg in sec),
            key=lambda pair: abs(self.distance(pair[1]) - target),
        )
        return self._site_of(*best)

    def _site_of(self, sec: Any, seg: Any) -> Site:
        return Site(self.short_name(sec), float(seg.x), self.distance(seg), float(seg.diam))

    def _site(self, spec: str) -> Site:
        match = _SITE.match(spec)
        if not match:
            raise MorphologyError(f"nexus site {spec!r} is not of the form apic[50](0.9)")
        name, x = match.group(1).strip(), float(match.group(2))
        if name not in self._by_name or not 0 <= x <= 1:
            raise MorphologyError(
                f"site {spec!r} does not exist in {self.morphology_path} (sections "
                f"{self.short_name(self.all[0])} … {self.short_name(self.all[-1])}; x in 0…1)"
            )
        sec = self._by_name[name]
        return self._site_of(sec, sec(x))

    # -- access -------------------------------------------------------------------------------

    def section(self, name: str) -> Any:
        """A section by its short name, e.g. ``"apic[50]"``."""
        return self._by_name[name]

    def location(self, site: Site) -> Any:
        """The NEURON segment of a :class:`Site`."""
        return self.section(site.section)(site.x)

    def dendritic_segments(self) -> list:
        """NEURON segments in input-row order (the order of :attr:`segments`)."""
        table = self.segments
        return [self.section(s)(x) for s, x in zip(table.section, table.x, strict=True)]

    def fingerprint(self) -> str:
        """Identifies the cell as simulated: morphology bytes, parameters, discretisation, nexus
        (and the apical trees, when named); for a lab's model, its files' contents, arguments,
        mechanisms and section lists instead (paths do not count: a moved model is the same)."""
        identity: dict[str, Any] = {"nexus": [self.nexus.section, self.nexus.x]}
        if self.template_record is not None:
            record = self.template_record
            identity["template"] = {
                "name": record["name"],
                "args": [record["files_sha256"].get(str(a), a) for a in record["args"]],
                "files_sha256": sorted(record["files_sha256"].values()),
                "mechanisms_sha256": record["mechanisms_sha256"],
                "section_lists": record["section_lists"],
            }
        else:
            assert self.parameters is not None
            identity["morphology_sha256"] = self.morphology_sha256
            identity["parameters"] = self.parameters.model_dump(mode="json")
            identity["max_segment_length"] = self.max_segment_length
        if self.apical_trees is not None:  # absent otherwise: earlier cells keep their print
            identity["apical_trees"] = sorted(self.apical_trees)
        if self.synapse_mechanisms:
            identity["synapse_mechanisms"] = {
                k: v.model_dump(mode="json") for k, v in sorted(self.synapse_mechanisms.items())
            }
        return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()

    def provenance(self) -> dict[str, Any]:
        """Everything a dataset records about its cell (JSON-ready): the summary, the
        fingerprint, the full parameter set (or the lab's model) and the segment table."""
        own = self.template is None
        return {
            **self.summary(),
            "fingerprint": self.fingerprint(),
            "max_segment_length_um": self.max_segment_length if own else None,
            "parameter_set": self.parameters.model_dump(mode="json") if self.parameters else None,
            "segment_table": self.segments.to_dict(),
        }

    def summary(self) -> dict[str, Any]:
        """Geometry summary for people (no simulation): counts, lengths, l_max, nexus."""
        table = self.segments
        basal = table.region == "basal"
        chosen: dict[str, Any] = {}
        if self.apical_trees is not None:
            chosen["apical_trees"] = self.apical_trees
        if self.template_record is not None:
            chosen["template"] = self.template_record
        if self.synapse_mechanisms:
            chosen["synapse_mechanisms"] = {
                k: v.model_dump(mode="json") for k, v in self.synapse_mechanisms.items()
            }
        return {
            "morphology": str(self.morphology_path),
            "morphology_sha256": self.morphology_sha256,
            "parameters": self.parameters.name if self.parameters else "the template's",
            **chosen,
            "sections": {
                "soma": len(self.soma),
                "basal": len(self.dend),
                "apical": len(self.apic),
                "axon": len(self.axon),
            },
            "segments": {
                "dendritic": len(table),
                "basal": table.n_basal,
                "apical": table.n_apical,
                "total": sum(sec.nseg for sec in self.all),
            },
            "length_um": {
                "basal": float(sum(sec.L for sec in self.dend)),
                "apical": float(sum(sec.L for sec in self.apic)),
            },
            "segment_length_um": {
                "min": float(table.length.min()),
                "mean": float(table.length.mean()),
                "max": float(table.length.max()),
            },
            "dendritic_area_um2": {
                "basal": float(table.area[basal].sum()),
                "apical": float(table.area[~basal].sum()),
            },
            "soma": {"L_um": float(self.soma[0].L), "diam_um": float(self.soma[0].diam)},
            "l_max_um": float(self.l_max),
            "nexus": {
                "section": self.nexus.section,
                "x": self.nexus.x,
                "distance_um": self.nexus.distance,
                "diam_um": self.nexus.diam,
            },
        }
