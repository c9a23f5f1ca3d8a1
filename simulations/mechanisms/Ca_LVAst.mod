COMMENT
Low-voltage-activated (T-type) calcium current, "Ca_LVAst" of the Hay et al.
(2011) channel library, written for elmpipe from docs/mechanisms.md.
I = gbar m^2 h (v - eca).  The equations are written for v' = v + 10 mV.
Kinetics fixed at 34 degC.
ENDCOMMENT

NEURON {
    THREADSAFE
    SUFFIX Ca_LVAst
    USEION ca READ eca WRITE ica
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
    LOCAL u
    UNITSOFF
    u = v + vjunction
    mInf = 1/(1 + exp((u + 30)/(-6)))
    mTau = (5 + 20/(1 + exp((u + 25)/5)))/qt
    hInf = 1/(1 + exp((u + 80)/6.4))
    hTau = (20 + 50/(1 + exp((u + 40)/7)))/qt
    UNITSON
}
