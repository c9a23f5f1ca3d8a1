"""The cell-general model that ships with elmpipe (`--init general`, `-k general`); what a lab types
with it on real simulations is tested on `elmpipe run`'s data in tests/test_pipeline.py."""

from __future__ import annotations

from surrogate.checkpoints import load_any, read_checkpoint
from surrogate.models.general_elm import GeneralELM
from surrogate.warm_start import GENERAL, resolve_source


def test_the_general_model_ships_and_loads():
    assert resolve_source("general") == GENERAL and GENERAL.is_file()
    model = load_any(GENERAL)
    assert isinstance(model, GeneralELM)
    assert (model.config.num_memory, model.config.num_branch) == (20, 45)
    assert GENERAL.stat().st_size < 100_000  # small: it ships in the wheel
    provenance = read_checkpoint(GENERAL)["provenance"]  # what it was pretrained on, no paths
    assert provenance["config"] == "configs/pretrain-general.yaml"
    assert provenance["cells"][0] == "built-in cell" and len(provenance["input_rate_hz"]) == 4
    assert not any(str(s).startswith("/") for s in provenance["stores"] + provenance["cells"])
