COMMENT
Transient sodium current of the axon (spike initiation site), "NaTa_t" of the
Hay et al. (2011) channel library, written for elmpipe from the rate equations in
docs/mechanisms.md.  I = gbar m^3 h (v - ena).

The rate functions have removable singularities of the form x/(1 - exp(-x/k));
they are evaluated through linoid() below, which uses the limit at x = 0.
Kinetics are fixed at 34 degC (Q10 2.3 from 21 degC) whatever `celsius` is,
as in the model that generated NeuronIO.
ENDCOMMENT

NEURON {
    THREADSAFE
    SUFFIX NaTa_t
    USEION na READ ena WRITE ina
    RANGE gbar, g, mInf, mTau, hInf, hTau
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
    ena (mV)
    ina (mA/cm2)
    g (S/cm2)
    mInf (1)
    mTau (ms)
    hInf (1)
    hTau (ms)
}

STATE { m h }

BREAKPOINT {
    SOLVE states METHOD cnexp
    g = gbar*m*m*m*h
    ina = g*(v - ena)
    CONDUCTANCE g USEION na  : di/dv = g exactly: one evaluation per step, not two
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
    a = 0.182*linoid(v + 38, 6)
    b = 0.124*linoid(-v - 38, 6)
    mInf = a/(a + b)
    mTau = 1/(a + b)/qt
    a = 0.015*linoid(-v - 66, 6)
    b = 0.015*linoid(v + 66, 6)
    hInf = a/(a + b)
    hTau = 1/(a + b)/qt
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
