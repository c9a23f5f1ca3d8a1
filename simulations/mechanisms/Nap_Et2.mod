COMMENT
Persistent sodium current of the axon, "Nap_Et2" of the Hay et al. (2011)
channel library, written for elmpipe from docs/mechanisms.md.
I = gbar m^3 h (v - ena).  Activation is a Boltzmann with tau taken from the
NaTa_t m-rates (x6); inactivation is very slow.  Kinetics fixed at 34 degC.
ENDCOMMENT

NEURON {
    THREADSAFE
    SUFFIX Nap_Et2
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
    mInf = 1/(1 + exp(-(v + 52.6)/4.6))
    a = 0.182*linoid(v + 38, 6)
    b = 0.124*linoid(-v - 38, 6)
    mTau = 6/(a + b)/qt
    hInf = 1/(1 + exp((v + 48.8)/10))
    a = 2.88e-6*linoid(-v - 17, 4.63)
    b = 6.94e-6*linoid(v + 64.4, 2.63)
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
