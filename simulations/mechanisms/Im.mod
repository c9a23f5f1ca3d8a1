COMMENT
Muscarinic (M-type) potassium current, "Im" of the Hay et al. (2011) channel
library, written for elmpipe from docs/mechanisms.md.
I = gbar m (v - ek).  Kinetics fixed at 34 degC.
ENDCOMMENT

NEURON {
    THREADSAFE
    SUFFIX Im
    USEION k READ ek WRITE ik
    RANGE gbar, g, mInf, mTau
    GLOBAL qt
}

UNITS {
    (S) = (siemens)
    (mV) = (millivolt)
    (mA) = (milliamp)
}

PARAMETER {
    gbar = 0.00001 (S/cm2)
    qt = 2.952882641412121 (1)  : 2.3^((34 - 21)/10)
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
    LOCAL a, b
    UNITSOFF
    a = 3.3e-3*exp(0.1*(v + 35))
    b = 3.3e-3*exp(-0.1*(v + 35))
    mInf = a/(a + b)
    mTau = 1/(a + b)/qt
    UNITSON
}
