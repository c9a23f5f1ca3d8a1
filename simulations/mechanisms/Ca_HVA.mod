COMMENT
High-voltage-activated calcium current, "Ca_HVA" of the Hay et al. (2011)
channel library, written for elmpipe from docs/mechanisms.md.
I = gbar m^2 h (v - eca); eca follows the Nernst potential of the dynamic cai.
No temperature factor.
ENDCOMMENT

NEURON {
    THREADSAFE
    SUFFIX Ca_HVA
    USEION ca READ eca WRITE ica
    RANGE gbar, g, mInf, mTau, hInf, hTau
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
    eca (mV)
    ica (mA/cm2)
    g (S/cm2)
    mInf (1)
    mTau (ms)
    hInf (1)
    hTau (ms)
}

STATE { m h }

BREAKPOINT {
    SOLVE states METHOD cnexp
    g = gbar*m*m*h
    ica = g*(v - eca)
    CONDUCTANCE g USEION ca  : di/dv = g exactly: one evaluation per step, not two
}

DERIVATIVE states {
    rates(v)
    m' = (mInf - m)/mTau
    h' = (hInf - h)/hTau
}

INITIAL {
    rates(v)
    m = mInf
    h = hInf
}

PROCEDURE rates(v (mV)) {
    LOCAL a, b
    UNITSOFF
    : 0.055 (-27 - v)/(exp((-27 - v)/3.8) - 1)
    a = 0.055*linoid(v + 27, 3.8)
    b = 0.94*exp((-75 - v)/17)
    mInf = a/(a + b)
    mTau = 1/(a + b)
    a = 4.57e-4*exp((-13 - v)/50)
    b = 0.0065/(exp((-v - 15)/28) + 1)
    hInf = a/(a + b)
    hTau = 1/(a + b)
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
