"""ELM and Branch-ELM: fast formulation = plain equations, routings, initialisation, counts."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from surrogate.models import ELMConfig, build_model, count_parameters
from surrogate.models.elm import ELM
from surrogate.models.elm_reference import plain_forward
from surrogate.models.routing import neuronio_routing, no_routing, random_routing
from surrogate.models.scan import chunked_scan, leaky_scan

ROUTINGS = {
    "neuronio": {"num_branch": 4, "num_synapse_per_branch": 12},
    "random": {"num_branch": 5, "num_synapse_per_branch": 7},
    "none": {"num_branch": None},
}


def randomised(config: ELMConfig, seed: int = 0) -> ELM:
    torch.manual_seed(seed)
    model = ELM(config).double()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.3 * torch.randn_like(p))
    return model


@pytest.mark.parametrize(
    ("version", "routing", "activation", "layers"),
    [(v, r, a, 1) for v, r, a in itertools.product(("v1", "v2"), ROUTINGS, ("relu", "silu"))]
    + [("v1", "neuronio", "relu", 2), ("v2", "random", "silu", 3)],
)
def test_fast_equals_plain_outputs_and_gradients(version, routing, activation, layers):
    config = ELMConfig(
        num_input=40,
        num_memory=6,
        version=version,
        routing=routing,
        activation=activation,
        mlp_layers=layers,
        learn_memory_tau=True,
        **ROUTINGS[routing],
    )
    model = randomised(config)
    x = torch.randint(-1, 2, (3, 70, 40), generator=torch.Generator().manual_seed(1)).double()
    weights = torch.randn(3, 70, 2, dtype=torch.float64)
    fast, plain = model(x), plain_forward(model, x)
    assert (fast - plain).abs().max() <= 1e-5
    params = [p for p in model.parameters() if p.requires_grad]
    g_fast = torch.autograd.grad((fast * weights).sum(), params)
    g_plain = torch.autograd.grad((plain * weights).sum(), params)
    for a, b in zip(g_fast, g_plain, strict=True):
        assert (a - b).abs().max() <= 1e-5
    assert any(g.abs().max() > 0 for g in g_fast)


def test_fast_equals_plain_in_float32_at_neuronio_shape():
    model = ELM(ELMConfig(num_input=1278))
    x = torch.randint(-1, 2, (2, 120, 1278)).float()
    assert (model(x) - plain_forward(model, x)).abs().max() < 1e-4


def test_leaky_scan_is_exact_across_chunks():
    z = torch.randn(2, 300, 3, dtype=torch.float64)
    expected = torch.zeros_like(z)
    state = torch.zeros(2, 3, dtype=torch.float64)
    for t in range(300):
        state = 0.9 * state + z[:, t]
        expected[:, t] = state
    for chunk in (1, 7, 128, 512):  # the GPU's chunked form, run here on a CPU
        assert torch.allclose(chunked_scan(z, 0.9, chunk=chunk), expected, atol=1e-12)
    z.requires_grad_(True)
    out = leaky_scan(z, 0.9)  # the CPU's compiled loop
    assert torch.allclose(out, expected, atol=1e-12)
    weights = torch.randn_like(expected)
    (grad,) = torch.autograd.grad((out * weights).sum(), z)
    (expected_grad,) = torch.autograd.grad((chunked_scan(z, 0.9, chunk=7) * weights).sum(), z)
    assert torch.allclose(grad, expected_grad, atol=1e-12)


def test_neuronio_routing_reproduces_the_released_layout():
    index, mask = neuronio_routing(1278, 45, 100)
    assert index.shape == (4500,) and index.dtype == torch.int64
    assert mask.sum() == 4282
    valid_per_branch = mask.view(45, 100).sum(1)
    assert valid_per_branch[:41].tolist() == [100] * 41
    assert valid_per_branch[41:].tolist() == [89, 60, 31, 2]
    # interleaved order 0, 639, 1, 640, … ; stride 29 between branches
    assert index[:6].tolist() == [0, 639, 1, 640, 2, 641]
    assert index[100:102].tolist() == [653, 15]  # position 29 → segment 14 inhibitory, then 15
    assert torch.all(index[~mask] == 1277)
    uses = torch.bincount(index[mask], minlength=1278)
    assert uses.min() >= 1 and uses.max() <= 4
    assert uses.float().mean() == pytest.approx(4282 / 1278)


def test_routing_generalises_to_other_channel_counts():
    index, mask = neuronio_routing(760, 45, 100)  # the built-in cell
    assert torch.all(torch.bincount(index[mask], minlength=760) >= 1)
    assert torch.all(index < 760)
    with pytest.raises(ValueError, match="exceeds"):
        neuronio_routing(1278, 10, 100)
    with pytest.raises(ValueError, match="halves"):
        neuronio_routing(11, 2, 10)
    assert no_routing(5, 5)[0].tolist() == [0, 1, 2, 3, 4]
    a, _ = random_routing(50, 200, seed=3)
    assert torch.equal(a, random_routing(50, 200, seed=3)[0])
    assert a.max() < 50


def test_memory_time_constants_initialised_log_spaced():
    model = ELM(ELMConfig(num_input=1278))
    tau = model.memory_tau()
    expected = [
        1.00,
        1.30,
        1.69,
        2.21,
        2.87,
        3.74,
        4.87,
        6.33,
        8.25,
        10.73,
        13.97,
        18.19,
        23.68,
        30.83,
        40.13,
        52.24,
        68.00,
        88.52,
        115.23,
        150.00,
    ]
    np.testing.assert_allclose(tau.numpy(), expected, atol=0.006)
    assert model._proto_tau_m[0] == pytest.approx(-18.87, abs=0.05)
    one = ELM(ELMConfig(num_input=1278, num_memory=1))
    assert one.memory_tau().item() == pytest.approx(1.0, abs=1e-4)
    assert not model._proto_tau_m.requires_grad


@pytest.mark.parametrize(
    ("tau", "v1", "v2"),
    [(1, 3.161, 0.993), (5, 0.906, 0.632), (25, 0.196, 0.181), (150, 0.0332, 0.0328)],
)
def test_memory_gains_of_both_update_rules(tau, v1, v2):
    kappa = torch.exp(torch.tensor(-1.0 / tau))
    assert ELM(ELMConfig(num_input=1278)).memory_gain(kappa).item() == pytest.approx(v1, rel=2e-3)
    assert ELM(ELMConfig(num_input=1278, version="v2")).memory_gain(kappa).item() == pytest.approx(
        v2, rel=2e-3
    )


@pytest.mark.parametrize(
    ("d_m", "expected"),
    [
        (1, 4601),
        (2, 4708),
        (3, 4823),
        (5, 5077),
        (7, 5363),
        (10, 5852),
        (15, 6827),
        (20, 8002),
        (25, 9377),
        (30, 10952),
        (40, 14702),
        (50, 19252),
        (75, 34127),
        (100, 54002),
    ],
)
def test_parameter_count_matches_released_models(d_m, expected):
    model = ELM(ELMConfig(num_input=1278, num_memory=d_m))
    assert count_parameters(model) == expected == 4 * d_m**2 + 95 * d_m + 4502
    assert (
        count_parameters(ELM(ELMConfig(num_input=1278, num_memory=d_m, version="v2"))) == expected
    )


def test_other_parameter_counts():
    vanilla = ELMConfig(num_input=1278, num_branch=None, routing="none")
    assert count_parameters(build_model(vanilla)) == 54100
    shd = ELMConfig(num_input=700, num_output=20, num_memory=100, num_branch=None, routing="none")
    assert count_parameters(build_model(shd)) == 183020
    learned = ELMConfig(num_input=1278, learn_memory_tau=True)
    assert count_parameters(build_model(learned)) == 8002 + 20


def test_memory_is_bounded_and_state_resets():
    model = randomised(
        ELMConfig(num_input=40, num_memory=6, num_branch=4, num_synapse_per_branch=12)
    )
    x = 5 * torch.ones(1, 200, 40, dtype=torch.float64)
    first = model(x)
    assert torch.equal(first, model(x))  # zero state at every call
    from surrogate.models.elm_reference import plain_forward as reference

    assert torch.allclose(first, reference(model, x))


@pytest.mark.parametrize(
    "bad",
    [
        {"tau_m_min": 10, "tau_m_max": 5},
        {"routing": "none"},  # 45 × 100 ≠ 1278
        {"num_branch": 5, "num_synapse_per_branch": 100},  # stride 256 > 100
        {"num_memory": 0},
        {"colour": "red"},
    ],
)
def test_invalid_configs(bad):
    with pytest.raises(ValueError):
        ELMConfig(num_input=1278, **bad)


@pytest.mark.parametrize("routing", ["neuronio", "random", "none"])
def test_event_inputs_give_the_per_step_equations(routing):
    """NeuronIO-like inputs as a sparse tensor of ±1 events (what the training loader gives):
    outputs and every gradient equal the plain per-step model's on the dense inputs."""
    from surrogate.data import signed_events

    config = ELMConfig(num_input=40, num_memory=5, routing=routing, **ROUTINGS[routing])
    model = randomised(config, seed=3).double()
    g = torch.Generator().manual_seed(4)
    windows = [(torch.rand(200, 40, generator=g) < 0.02).numpy() for _ in range(3)]
    sign = np.where(np.arange(40) < 20, 1.0, -1.0)
    events = signed_events(windows, sign).double()
    dense = torch.from_numpy(np.stack(windows) * sign)
    assert events.is_sparse and torch.equal(events.to_dense(), dense)
    weights = torch.randn(3, 200, 2, dtype=torch.float64, generator=g)
    fast, plain = model(events), plain_forward(model, dense)
    assert (fast - plain).abs().max() <= 1e-10
    params = [p for p in model.parameters() if p.requires_grad]
    g_fast = torch.autograd.grad((fast * weights).sum(), params)
    g_plain = torch.autograd.grad((plain * weights).sum(), params)
    for a, b in zip(g_fast, g_plain, strict=True):
        assert (a - b).abs().max() <= 1e-10


def test_torch_loop_backend_gives_the_numba_results():
    """The per-step torch loops (what the GPU captures as CUDA graphs) run on a CPU here and
    give the compiled recurrence's outputs and gradients."""
    from surrogate.models.recurrence import recurrence_backend

    model = randomised(ELMConfig(num_input=40, num_memory=6, **ROUTINGS["neuronio"]), seed=5)
    x = torch.randint(-1, 2, (2, 90, 40), generator=torch.Generator().manual_seed(6)).double()
    params = [p for p in model.parameters() if p.requires_grad]
    results = {}
    for backend in ("numba", "loop"):
        with recurrence_backend(backend):
            out = model(x)
            results[backend] = (out, torch.autograd.grad((out**2).sum(), params))
    (out_n, grads_n), (out_l, grads_l) = results["numba"], results["loop"]
    assert (out_n - out_l).abs().max() <= 1e-12
    for a, b in zip(grads_n, grads_l, strict=True):
        assert (a - b).abs().max() <= 1e-10
    with pytest.raises(ValueError, match="CUDA"), recurrence_backend("graph"):
        model(x)


def test_replayed_recording_reads_new_inputs_and_returns_copies():
    """The CUDA-graph wrapper's contract, with a recorder that reruns instead of capturing:
    every replay reads the values passed now, and earlier results are not overwritten."""
    from surrogate.models import recurrence

    runs = []

    def rerun(run):
        run()
        return lambda: (runs.append(1), run())

    g = torch.Generator().manual_seed(7)
    d, width = 4, 8

    def tensors():
        return (
            torch.randn(3, 20, width, generator=g, dtype=torch.float64),
            0.3 * torch.randn(width, d, generator=g, dtype=torch.float64),
            0.3 * torch.randn(d, width, generator=g, dtype=torch.float64),
            torch.randn(d, generator=g, dtype=torch.float64),
            torch.rand(d, generator=g, dtype=torch.float64),
            torch.rand(d, generator=g, dtype=torch.float64),
        )

    recurrence._recorded.clear()
    first, second = tensors(), tensors()
    got_first = recurrence._replayed(recurrence._torch_forward, first, False, rerun)
    got_second = recurrence._replayed(recurrence._torch_forward, second, False, rerun)
    assert len(recurrence._recorded) == 1 and len(runs) == 2  # recorded once, replayed twice
    for got, args in ((got_first, first), (got_second, second)):
        expected = recurrence._torch_forward(*args, False)
        for a, b in zip(got, expected, strict=True):
            assert torch.equal(a, b)
    recurrence._recorded.clear()


def test_event_projection_paths_agree_with_the_dense_product():
    """The CPU's compiled event loops and the torch gather/scatter-add used on GPUs (run here on
    a CPU) give x·W and its weight gradient."""
    from surrogate.data import signed_events
    from surrogate.models.event_projection import _project_with_torch, project_events

    g = torch.Generator().manual_seed(8)
    windows = [(torch.rand(50, 30, generator=g) < 0.05).numpy() for _ in range(4)]
    events = signed_events(windows, np.where(np.arange(30) < 15, 1.0, -1.0)).double()
    dense = events.to_dense()
    weight = torch.randn(30, 7, dtype=torch.float64, generator=g, requires_grad=True)
    grad_out = torch.randn(4, 50, 7, dtype=torch.float64, generator=g)
    expected = dense @ weight
    (expected_grad,) = torch.autograd.grad(expected, weight, grad_out)
    b, t, c = events._indices()
    for out in (
        project_events(events, weight),
        _project_with_torch(b * 50 + t, c, events._values(), weight, 200).view(4, 50, 7),
    ):
        assert torch.allclose(out, expected, atol=1e-12)
        (grad,) = torch.autograd.grad(out, weight, grad_out)
        assert torch.allclose(grad, expected_grad, atol=1e-12)
