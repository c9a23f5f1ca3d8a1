COMMENT
Fast-inactivating (transient) potassium current of the axon, "K_Tst" of the
Hay et al. (2011) channel library, written for elmpipe from docs/mechanisms.md.
I = gbar m^4 h (v - ek).  The equations are written for v' = v + 10 mV (a
liquid-junction-potential correction).  Kinetics fixed at 34 degC.
ENDCOMMENT

NEURON {
    THREADSAFE
    SUFFIX K_Tst
    USEION k READ ek WRITE ik
    RANGE gbar, g, mInf, mTau, hInf, hTau
    GLOBAL qt, vjunction
}

UNITS {
    (S) = (siemens)
    (mV) = (millivolt)
    (mA) = (milliamp)
}

PARAMETER {
    gbar = 0.00001 (S/cm2)
    qt = 2.952882641412121 (1)  : 2.3^((34 - 21)/10)
    vjunction = 10 (mV)
}

ASSIGNED {
    v (mV)
    ek (mV)
    ik (mA/cm2)
    g (S/cm2)
    mInf (1)
    mTau (ms)
    hInf (1)
    hTau (ms)
}

STATE { m h }

BREAKPOINT {
    SOLVE states METHOD cnexp
    g = gbar*m*m*m*m*h
    ik = g*(v - ek)
    CONDUCTANCE g USEION k  : di/dv = g exactly: one evaluation per step, not two
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
    LOCAL u
    UNITSOFF
    u = v + vjunction
    mInf = 1/(1 + exp(-u/19))
    mTau = (0.34 + 0.92*exp(-((u + 71)/59)^2))/qt
    hInf = 1/(1 + exp((u + 66)/10))
    hTau = (8 + 49*exp(-((u + 73)/23)^2))/qt
    UNITSON
}
