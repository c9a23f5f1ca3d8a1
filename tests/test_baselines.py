"""TCN and LSTM baselines: causality, receptive field, parameter counts, the shared two heads."""

from __future__ import annotations

import pytest
import torch

from surrogate.models import LSTMConfig, TCNConfig, build_model, count_parameters


def test_neuronio_tcn_7x128x153():
    config = TCNConfig(num_input=1278)
    assert config.name == "7x128x153" and config.receptive_field == 153
    model = build_model(config)
    # 45·1278·128 + 128 + 6·(19·128·128 + 128) + 7·2·128 (BN) + 2·129 (heads)
    assert count_parameters(model) == 7_361_408 + 6 * 311_424 + 1_792 + 258
    assert model.spike_head.bias.item() == -2.0


def test_tcn_is_causal_with_its_receptive_field():
    torch.manual_seed(0)
    config = TCNConfig(num_input=6, depth=3, width=8, first_kernel=5, kernel=4)
    assert config.receptive_field == 5 + 2 * 3
    model = build_model(config).eval()
    x = torch.randn(1, 60, 6)
    base = model(x)
    later = x.clone()
    later[:, 40:] += 1.0  # changing inputs at t ≥ 40 must not change outputs before 40
    assert torch.equal(model(later)[:, :40], base[:, :40])
    assert not torch.equal(model(later)[:, 40:], base[:, 40:])
    earlier = x.clone()
    earlier[:, :20] += 1.0  # outputs at t ≥ 20 + 11 − 1 no longer see inputs before 20
    assert torch.equal(model(earlier)[:, 30:], base[:, 30:])
    assert not torch.equal(model(earlier)[:, 29], base[:, 29])


@pytest.mark.parametrize(("hidden", "expected"), [(50, 266_102), (15, 77_732)])
def test_lstm_parameter_counts(hidden, expected):
    model = build_model(LSTMConfig(num_input=1278, hidden=hidden))
    assert count_parameters(model) == expected


def test_lstm_is_causal_and_has_two_outputs():
    model = build_model(LSTMConfig(num_input=5, hidden=4)).eval()
    x = torch.randn(2, 30, 5)
    changed = x.clone()
    changed[:, 20:] = 0
    assert model(x).shape == (2, 30, 2)
    assert torch.equal(model(x)[:, :20], model(changed)[:, :20])
