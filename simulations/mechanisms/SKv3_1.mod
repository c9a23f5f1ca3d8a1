COMMENT
Kv3.1 (fast delayed-rectifier) potassium current, "SKv3_1" of the Hay et al.
(2011) channel library, written for elmpipe from docs/mechanisms.md.
I = gbar m (v - ek).  No temperature factor.
ENDCOMMENT

NEURON {
    THREADSAFE
    SUFFIX SKv3_1
    USEION k READ ek WRITE ik
    RANGE gbar, g, mInf, mTau
}

UNITS {
    (S) = (siemens)
    (mV) = (millivolt)
    (mA) = (milliamp)
}

PARAMETER {
    gbar = 0.00001 (S/cm2)
}

ASSIGNED {
    v (mV)
    ek (mV)
    ik (mA/cm2)
    g (S/cm2)
    mInf (1)
    mTau (ms)
}

STATE { m }

BREAKPOINT {
    SOLVE states METHOD cnexp
    g = gbar*m
    ik = g*(v - ek)
    CONDUCTANCE g USEION k  : di/dv = g exactly: one evaluation per step, not two
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
    UNITSOFF
    mInf = 1/(1 + exp((v - 18.7)/(-9.7)))
    mTau = 4/(1 + exp((v + 46.56)/(-44.14)))
    UNITSON
}
