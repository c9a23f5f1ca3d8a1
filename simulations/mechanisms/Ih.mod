COMMENT
Hyperpolarisation-activated cation current (HCN), "Ih" of the Hay et al. (2011)
channel library, written for elmpipe from docs/mechanisms.md.
I = gbar m (v - ehcn) with a fixed reversal ehcn = -45 mV carried as a
non-specific current.  No temperature factor.  `vshift` moves the activation
curve (0 mV in NeuronIO).
ENDCOMMENT

NEURON {
    THREADSAFE
    SUFFIX Ih
    NONSPECIFIC_CURRENT ihcn
    RANGE gbar, g, ihcn, mInf, mTau
    GLOBAL ehcn, vshift
}

UNITS {
    (S) = (siemens)
    (mV) = (millivolt)
    (mA) = (milliamp)
}

PARAMETER {
    gbar = 0.00001 (S/cm2)
    ehcn = -45 (mV)
    vshift = 0 (mV)
}

ASSIGNED {
    v (mV)
    ihcn (mA/cm2)
    g (S/cm2)
    mInf (1)
    mTau (ms)
}

STATE { m }

BREAKPOINT {
    SOLVE states METHOD cnexp
    g = gbar*m
    ihcn = g*(v - ehcn)
    CONDUCTANCE g  : di/dv = g exactly: one evaluation per step, not two
}

DERIVATIVE states {
    rates(v)
    m' = (mInf - m)/mTau
}

INITIAL {
    rates(v)
    m = mInf
}

PROCEDURE rates(v (mV)) {
    LOCAL a, b, u
    UNITSOFF
    u = v - vshift
    : 6.43e-3 (u + 154.9)/(exp((u + 154.9)/11.9) - 1)
    a = 6.43e-3*linoid(-(u + 154.9), 11.9)
    b = 0.193*exp(u/33.1)
    mInf = a/(a + b)
    mTau = 1/(a + b)
    UNITSON
}

FUNCTION linoid(x, k) {
    : x/(1 - exp(-x/k)), continuous through x = 0 where it tends to k
    if (fabs(x/k) < 1e-6) {
        linoid = k*(1 + x/k/2)
    } else {
        linoid = x/(1 - exp(-x/k))
    }
}
