"""The sequential part of the fast ELM: a d_m-sized recurrence over time, with its own backward.

    a_t  = pre_t + R·m_{t−1}              (R = W1's memory columns · diag(κ_m))
    h_t  = φ(a_t)
    Δm_t = 1.7159·tanh((2/3)(W2·h_t + c2))
    m_t  = κ_m ⊙ m_{t−1} + g ⊙ Δm_t

Autograd would record ~10 tiny operations per time step and walk them back one by one, paying
microseconds of framework overhead for each on matrices of a few hundred numbers. Here the forward
loop and the back-propagation-through-time loop record nothing, and every weight gradient is one
large matrix product after the loop. The operations are the same, so results equal autograd's
(tests check it). With more than one hidden MLP layer the plain autograd loop is used.

Backends (:func:`recurrence_backend` overrides the choice):

- ``numba`` (CPU default): both loops compiled with numba.
- ``graph`` (CUDA default): the per-step torch loops captured once per shape as CUDA graphs and
  replayed — a per-step loop launches ~6 small kernels per millisecond of input, and on a GPU
  the launches, not the arithmetic, take the time; a replayed graph launches them all at once.
- ``loop``: the same torch loops run eagerly, on any device (the reference for ``graph``, and
  how the graph's loops are tested on a CPU).
"""

from __future__ import annotations

import contextlib
from collections import OrderedDict
from collections.abc import Callable, Iterator
from typing import Literal

import numba
import numpy as np
import torch

Backend = Literal["numba", "graph", "loop"]
_forced_backend: Backend | None = None

#: the memory update's scaled tanh, 1.7159·tanh(2x/3) (LeCun's), the same in every ELM code path
SCALED_TANH_GAIN = 1.7159
SCALED_TANH_SLOPE = 2.0 / 3.0


def _act(x: torch.Tensor, silu: bool) -> torch.Tensor:
    return torch.nn.functional.silu(x) if silu else torch.relu(x)


# -- CPU kernels (numba) -------------------------------------------------------------------------


@numba.njit(cache=True, nogil=True)
def _cpu_forward(pre, recurrent_t, w_out_t, b_out, kappa, scaled_gain, silu):  # pragma: no cover
    steps, batch, width = pre.shape
    d = kappa.shape[0]
    pre_act = np.empty_like(pre)
    tanhs = np.empty((steps, batch, d), pre.dtype)
    states = np.empty((steps, batch, d), pre.dtype)
    memory = np.zeros((batch, d), pre.dtype)
    hidden = np.empty((batch, width), pre.dtype)
    for t in range(steps):
        a = np.dot(memory, recurrent_t) + pre[t]
        pre_act[t] = a
        for b in range(batch):
            for j in range(width):
                x = a[b, j]
                hidden[b, j] = x / (1.0 + np.exp(-x)) if silu else max(x, 0.0)
        o = np.dot(hidden, w_out_t)
        for b in range(batch):
            for k in range(d):
                th = np.tanh((o[b, k] + b_out[k]) * SCALED_TANH_SLOPE)
                tanhs[t, b, k] = th
                memory[b, k] = kappa[k] * memory[b, k] + scaled_gain[k] * th
        states[t] = memory
    return states, pre_act, tanhs


@numba.njit(cache=True, nogil=True)
def _cpu_backward(
    grad_states, pre_act, tanhs, recurrent, w_out, kappa, scaled_gain, silu
):  # pragma: no cover
    steps, batch, width = pre_act.shape
    d = kappa.shape[0]
    grad_a = np.empty_like(pre_act)
    grad_o = np.empty_like(tanhs)
    grad_memory = np.empty_like(tanhs)
    carry = np.zeros((batch, d), pre_act.dtype)
    go = np.empty((batch, d), pre_act.dtype)
    for i in range(steps):
        t = steps - 1 - i
        for b in range(batch):
            for k in range(d):
                gm = grad_states[t, b, k] + carry[b, k]
                grad_memory[t, b, k] = gm
                th = tanhs[t, b, k]
                go[b, k] = gm * scaled_gain[k] * SCALED_TANH_SLOPE * (1.0 - th * th)
        grad_o[t] = go
        grad_h = np.dot(go, w_out)
        for b in range(batch):
            for j in range(width):
                x = pre_act[t, b, j]
                if silu:
                    sig = 1.0 / (1.0 + np.exp(-x))
                    grad_a[t, b, j] = grad_h[b, j] * sig * (1.0 + x * (1.0 - sig))
                else:
                    grad_a[t, b, j] = grad_h[b, j] if x > 0.0 else 0.0
        back = np.dot(grad_a[t], recurrent)
        for b in range(batch):
            for k in range(d):
                carry[b, k] = grad_memory[t, b, k] * kappa[k] + back[b, k]
    return grad_a, grad_o, grad_memory


def _time_major_kernel(
    kernel: Callable[..., tuple[np.ndarray, ...]],
    batched: tuple[torch.Tensor, ...],
    shared: tuple,
) -> tuple[torch.Tensor, ...]:
    """``kernel`` on time-major copies of ``batched`` (batch, time, ·); batch-major results.

    One thread: splitting the batch across threads was measured slower on 2 cores (torch's
    own thread pool competes for them between the steps).
    """
    results = kernel(*(_numpy(t, True) for t in batched), *shared)
    return tuple(_torch(r, True) for r in results)


def _numpy(x: torch.Tensor, time_major: bool = False) -> np.ndarray:
    x = x.detach()
    if time_major:
        x = x.transpose(0, 1)
    return np.ascontiguousarray(x.numpy())


def _torch(x: np.ndarray, time_major: bool = False) -> torch.Tensor:
    out = torch.from_numpy(x)
    return out.transpose(0, 1) if time_major else out


# -- torch loops (any device; captured as CUDA graphs on a GPU) ------------------------------------


@torch.no_grad()
def _torch_forward(
    pre: torch.Tensor,
    recurrent: torch.Tensor,
    w_out: torch.Tensor,
    b_out: torch.Tensor,
    kappa: torch.Tensor,
    scaled_gain: torch.Tensor,
    silu: bool,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    batch, steps, width = pre.shape
    memory = torch.zeros(batch, kappa.shape[0], dtype=pre.dtype, device=pre.device)
    states = torch.empty(batch, steps, kappa.shape[0], dtype=pre.dtype, device=pre.device)
    pre_act = torch.empty(batch, steps, width, dtype=pre.dtype, device=pre.device)
    tanhs = torch.empty(batch, steps, kappa.shape[0], dtype=pre.dtype, device=pre.device)
    for t in range(steps):
        a = torch.addmm(pre[:, t], memory, recurrent.t())
        h = torch.nn.functional.silu(a) if silu else torch.relu(a)
        th = torch.tanh(torch.addmm(b_out, h, w_out.t()) * SCALED_TANH_SLOPE)
        memory = kappa * memory + scaled_gain * th
        pre_act[:, t] = a
        tanhs[:, t] = th
        states[:, t] = memory
    return states, pre_act, tanhs


@torch.no_grad()
def _torch_backward(
    grad_states: torch.Tensor,
    pre_act: torch.Tensor,
    tanhs: torch.Tensor,
    recurrent: torch.Tensor,
    w_out: torch.Tensor,
    kappa: torch.Tensor,
    scaled_gain: torch.Tensor,
    silu: bool,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    batch, steps = pre_act.shape[0], pre_act.shape[1]
    grad_a = torch.empty_like(pre_act)
    grad_o = torch.empty_like(tanhs)
    grad_memory = torch.empty_like(tanhs)
    carry = torch.zeros(batch, kappa.shape[0], dtype=pre_act.dtype, device=pre_act.device)
    for i in range(steps):
        t = steps - 1 - i
        grad_m = grad_states[:, t] + carry
        th = tanhs[:, t]
        go = grad_m * scaled_gain * SCALED_TANH_SLOPE * (1.0 - th * th)
        grad_h = go @ w_out
        a = pre_act[:, t]
        if silu:
            sig = torch.sigmoid(a)
            ga = grad_h * (sig * (1.0 + a * (1.0 - sig)))
        else:
            ga = grad_h * (a > 0).to(a.dtype)
        carry = torch.addmm(grad_m * kappa, ga, recurrent)
        grad_a[:, t] = ga
        grad_o[:, t] = go
        grad_memory[:, t] = grad_m
    return grad_a, grad_o, grad_memory


class StaticReplay:
    """A function of tensors recorded once for fixed shapes and replayed on new values.

    Inputs are copied into static buffers the recording reads; the recording's outputs are
    static buffers too, overwritten by the next replay, so they are returned as copies.
    ``record(run)`` returns the replay callable: for CUDA, a captured CUDA graph
    (:func:`cuda_graph_recorder`); tests pass a recorder that simply reruns ``run``.
    """

    def __init__(
        self,
        function: Callable[..., tuple[torch.Tensor, ...]],
        example: tuple[torch.Tensor, ...],
        record: Callable[[Callable[[], None]], Callable[[], None]],
    ) -> None:
        self.inputs = tuple(t.clone() for t in example)
        self.outputs: tuple[torch.Tensor, ...] = ()

        def run() -> None:
            self.outputs = function(*self.inputs)

        self.replay = record(run)

    def __call__(self, *args: torch.Tensor) -> tuple[torch.Tensor, ...]:
        for buffer, value in zip(self.inputs, args, strict=True):
            buffer.copy_(value)
        self.replay()
        return tuple(t.clone() for t in self.outputs)


def cuda_graph_recorder(run: Callable[[], None]) -> Callable[[], None]:  # pragma: no cover
    """Capture ``run`` as a CUDA graph (after warm-up runs on a side stream, as CUDA asks)."""
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(2):
            run()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        run()
    return graph.replay


#: recorded loops by (direction, shapes, dtype, device, silu); a few shapes occur per run
#: (training batches, validation batches), so a small cache holds them all
_recorded: OrderedDict[tuple, StaticReplay] = OrderedDict()
_RECORDED_MAX = 8


def _replayed(
    function: Callable[..., tuple[torch.Tensor, ...]],
    tensors: tuple[torch.Tensor, ...],
    silu: bool,
    record: Callable[[Callable[[], None]], Callable[[], None]],
) -> tuple[torch.Tensor, ...]:
    key = (
        function.__name__,
        silu,
        tuple((tuple(t.shape), t.dtype, str(t.device)) for t in tensors),
    )
    if key not in _recorded:
        _recorded[key] = StaticReplay(lambda *args: function(*args, silu), tensors, record)
        if len(_recorded) > _RECORDED_MAX:
            _recorded.popitem(last=False)
    _recorded.move_to_end(key)
    return _recorded[key](*tensors)


@contextlib.contextmanager
def recurrence_backend(backend: Backend | None) -> Iterator[None]:
    """Run the recurrence with ``backend`` inside the block (None: the device's default)."""
    global _forced_backend
    previous, _forced_backend = _forced_backend, backend
    try:
        yield
    finally:
        _forced_backend = previous


def _backend(x: torch.Tensor) -> Backend:
    if _forced_backend is not None:
        if _forced_backend == "numba" and x.is_cuda:
            raise ValueError("the numba recurrence runs on the CPU only")
        if _forced_backend == "graph" and not x.is_cuda:
            raise ValueError("the CUDA-graph recurrence needs a CUDA device")
        return _forced_backend
    return "graph" if x.is_cuda else "numba"


def _run_torch(function, tensors, silu, backend: Backend, record=None):
    if backend == "graph":
        return _replayed(function, tensors, silu, record or cuda_graph_recorder)
    return function(*tensors, silu)


class _Recurrence(torch.autograd.Function):
    @staticmethod
    def forward(ctx, pre, recurrent, w_out, b_out, kappa, gain, silu: bool):
        scaled_gain = gain * SCALED_TANH_GAIN
        backend = _backend(pre)
        if backend != "numba":
            tensors = (pre.contiguous(), recurrent, w_out, b_out, kappa, scaled_gain)
            states, pre_act, tanhs = _run_torch(_torch_forward, tensors, silu, backend)
        else:
            shared = (recurrent.t(), w_out.t(), b_out, kappa, scaled_gain)
            states, pre_act, tanhs = _time_major_kernel(
                _cpu_forward, (pre,), (*(_numpy(t) for t in shared), silu)
            )
        ctx.save_for_backward(states, pre_act, tanhs, recurrent, w_out, kappa, scaled_gain)
        ctx.silu = silu
        ctx.backend = backend
        return states

    @staticmethod
    def backward(ctx, grad_states):
        states, pre_act, tanhs, recurrent, w_out, kappa, scaled_gain = ctx.saved_tensors
        if ctx.backend != "numba":
            tensors = (grad_states.contiguous(), pre_act, tanhs, recurrent, w_out, kappa)
            grad_a, grad_o, grad_m = _run_torch(
                _torch_backward, (*tensors, scaled_gain), ctx.silu, ctx.backend
            )
        else:
            shared = (recurrent, w_out, kappa, scaled_gain)
            grad_a, grad_o, grad_m = _time_major_kernel(
                _cpu_backward,
                (grad_states, pre_act, tanhs),
                (*(_numpy(t) for t in shared), ctx.silu),
            )
        previous = torch.cat([torch.zeros_like(states[:, :1]), states[:, :-1]], dim=1)
        hidden = _act(pre_act, ctx.silu)
        flat_a = grad_a.reshape(-1, grad_a.shape[-1])
        flat_o = grad_o.reshape(-1, grad_o.shape[-1])
        grad_recurrent = flat_a.t() @ previous.reshape(-1, previous.shape[-1])
        grad_w_out = flat_o.t() @ hidden.reshape(-1, hidden.shape[-1])
        grad_b_out = flat_o.sum(0)
        # m_t = κ ⊙ m_{t−1} + g ⊙ 1.7159·th_t
        grad_kappa = (grad_m * previous).sum((0, 1))
        grad_gain = (grad_m * SCALED_TANH_GAIN * tanhs).sum((0, 1))
        return grad_a, grad_recurrent, grad_w_out, grad_b_out, grad_kappa, grad_gain, None


def elm_recurrence(
    pre: torch.Tensor,
    recurrent: torch.Tensor,
    hidden: list[tuple[torch.Tensor, torch.Tensor]],
    w_out: torch.Tensor,
    b_out: torch.Tensor,
    kappa_m: torch.Tensor,
    gain: torch.Tensor,
    silu: bool,
) -> torch.Tensor:
    """Memory states m_1 … m_T, shape (batch, time, d_m), from m_0 = 0."""
    if not hidden:
        return _Recurrence.apply(pre, recurrent, w_out, b_out, kappa_m, gain, silu)
    batch, steps, _ = pre.shape
    m = pre.new_zeros(batch, kappa_m.shape[0])
    states = []
    for t in range(steps):
        h = _act(pre[:, t] + m @ recurrent.T, silu)
        for weight, bias in hidden:
            h = _act(torch.nn.functional.linear(h, weight, bias), silu)
        delta = SCALED_TANH_GAIN * torch.tanh(
            SCALED_TANH_SLOPE * torch.nn.functional.linear(h, w_out, b_out)
        )
        m = kappa_m * m + gain * delta
        states.append(m)
    return torch.stack(states, dim=1)
