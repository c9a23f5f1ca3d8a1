"""Independent numpy versions of the channel equations in docs/mechanisms.md (and l5pc-model.md).

Written in the documented form, singularities included, so that the tests compare the NMODL
against the equations rather than against a second copy of the NMODL logic.
Each entry maps a gate to (steady state, time constant in ms) at voltage v (mV).
"""

from __future__ import annotations

import numpy as np

QT = 2.3 ** ((34 - 21) / 10)


def _na_transient(v, vm, vh):
    am = 0.182 * (v + vm) / (1 - np.exp(-(v + vm) / 6))
    bm = 0.124 * (-v - vm) / (1 - np.exp(-(-v - vm) / 6))
    ah = -0.015 * (v + vh) / (1 - np.exp((v + vh) / 6))
    bh = -0.015 * (-v - vh) / (1 - np.exp((-v - vh) / 6))
    return {"m": (am / (am + bm), 1 / (am + bm) / QT), "h": (ah / (ah + bh), 1 / (ah + bh) / QT)}


def nata_t(v):
    return _na_transient(v, 38, 66)


def nats2_t(v):
    return _na_transient(v, 32, 60)


def nap_et2(v):
    am = 0.182 * (v + 38) / (1 - np.exp(-(v + 38) / 6))
    bm = 0.124 * (-v - 38) / (1 - np.exp(-(-v - 38) / 6))
    ah = -2.88e-6 * (v + 17) / (1 - np.exp((v + 17) / 4.63))
    bh = 6.94e-6 * (v + 64.4) / (1 - np.exp(-(v + 64.4) / 2.63))
    return {
        "m": (1 / (1 + np.exp((v + 52.6) / -4.6)), 6 / (am + bm) / QT),
        "h": (1 / (1 + np.exp((v + 48.8) / 10)), 1 / (ah + bh) / QT),
    }


def k_tst(v):
    u = v + 10
    return {
        "m": (1 / (1 + np.exp(-u / 19)), (0.34 + 0.92 * np.exp(-(((u + 71) / 59) ** 2))) / QT),
        "h": (1 / (1 + np.exp((u + 66) / 10)), (8 + 49 * np.exp(-(((u + 73) / 23) ** 2))) / QT),
    }


def k_pst(v):
    u = v + 10
    tau_m = (
        (1.25 + 175.03 * np.exp(0.026 * u)) / QT
        if u < -50
        else (1.25 + 13 * np.exp(-0.026 * u)) / QT
    )
    tau_h = (360 + (1010 + 24 * (u + 55)) * np.exp(-(((u + 75) / 48) ** 2))) / QT
    return {
        "m": (1 / (1 + np.exp(-(u + 1) / 12)), tau_m),
        "h": (1 / (1 + np.exp((u + 54) / 11)), tau_h),
    }


def skv3_1(v):
    return {"m": (1 / (1 + np.exp((v - 18.7) / -9.7)), 4 / (1 + np.exp((v + 46.56) / -44.14)))}


def im(v):
    a = 3.3e-3 * np.exp(0.1 * (v + 35))
    b = 3.3e-3 * np.exp(-0.1 * (v + 35))
    return {"m": (a / (a + b), 1 / (a + b) / QT)}


def ih(v):
    a = 6.43e-3 * (v + 154.9) / (np.exp((v + 154.9) / 11.9) - 1)
    b = 0.193 * np.exp(v / 33.1)
    return {"m": (a / (a + b), 1 / (a + b))}


def ca_hva(v):
    am = 0.055 * (-27 - v) / (np.exp((-27 - v) / 3.8) - 1)
    bm = 0.94 * np.exp((-75 - v) / 17)
    ah = 4.57e-4 * np.exp((-13 - v) / 50)
    bh = 0.0065 / (np.exp((-v - 15) / 28) + 1)
    return {"m": (am / (am + bm), 1 / (am + bm)), "h": (ah / (ah + bh), 1 / (ah + bh))}


def ca_lvast(v):
    u = v + 10
    return {
        "m": (1 / (1 + np.exp((u + 30) / -6)), (5 + 20 / (1 + np.exp((u + 25) / 5))) / QT),
        "h": (1 / (1 + np.exp((u + 80) / 6.4)), (20 + 50 / (1 + np.exp((u + 40) / 7))) / QT),
    }


def sk_e2_zinf(cai_mm):
    cai_mm = max(cai_mm, 1e-7)
    return 1 / (1 + (0.00043 / cai_mm) ** 4.8)


#: mechanism → (reference rates, {gate: exponent}, current variable, reversal)
CHANNELS = {
    "NaTa_t": (nata_t, {"m": 3, "h": 1}, "ina", "ena"),
    "NaTs2_t": (nats2_t, {"m": 3, "h": 1}, "ina", "ena"),
    "Nap_Et2": (nap_et2, {"m": 3, "h": 1}, "ina", "ena"),
    "K_Tst": (k_tst, {"m": 4, "h": 1}, "ik", "ek"),
    "K_Pst": (k_pst, {"m": 2, "h": 1}, "ik", "ek"),
    "SKv3_1": (skv3_1, {"m": 1}, "ik", "ek"),
    "Im": (im, {"m": 1}, "ik", "ek"),
    "Ih": (ih, {"m": 1}, "ihcn_Ih", -45.0),
    "Ca_HVA": (ca_hva, {"m": 2, "h": 1}, "ica", "eca"),
    "Ca_LVAst": (ca_lvast, {"m": 2, "h": 1}, "ica", "eca"),
}

#: points where the documented x/(1 - exp(x)) forms are 0/0
SINGULAR_POINTS = {
    "NaTa_t": [-38.0, -66.0],
    "NaTs2_t": [-32.0, -60.0],
    "Nap_Et2": [-38.0, -17.0, -64.4],
    "Ih": [-154.9],
    "Ca_HVA": [-27.0],
}


def dual_exponential(t, tau_r, tau_d):
    """Peak-normalised g(t) of a dual-exponential synapse after one event at t = 0."""
    t = np.asarray(t, float)
    tp = tau_r * tau_d / (tau_d - tau_r) * np.log(tau_d / tau_r)
    factor = 1 / (np.exp(-tp / tau_d) - np.exp(-tp / tau_r))
    return np.where(t >= 0, factor * (np.exp(-t / tau_d) - np.exp(-t / tau_r)), 0.0)


def mg_block(v, mg=1.0):
    return 1 / (1 + np.exp(-0.08 * v) * mg / 3.57)
