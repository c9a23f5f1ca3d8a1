COMMENT
Small-conductance calcium-activated potassium current, "SK_E2" of the Hay et al.
(2011) channel library, written for elmpipe from docs/mechanisms.md.
I = gbar z (v - ek) with z_inf a Hill function of the sub-membrane cai
(K_d 0.43 uM, n = 4.8) and a fixed 1 ms time constant.
ENDCOMMENT

NEURON {
    THREADSAFE
    SUFFIX SK_E2
    USEION k READ ek WRITE ik
    USEION ca READ cai
    RANGE gbar, g, zInf, zTau
}

UNITS {
    (S) = (siemens)
    (mV) = (millivolt)
    (mA) = (milliamp)
    (mM) = (milli/liter)
}

PARAMETER {
    gbar = 0.000001 (S/cm2)
    zTau = 1 (ms)
}

ASSIGNED {
    v (mV)
    ek (mV)
    ik (mA/cm2)
    cai (mM)
    g (S/cm2)
    zInf (1)
}

STATE { z }

BREAKPOINT {
    SOLVE states METHOD cnexp
    g = gbar*z
    ik = g*(v - ek)
    CONDUCTANCE g USEION k  : di/dv = g exactly: one evaluation per step, not two
}

DERIVATIVE states {
    rates(cai)
    z' = (zInf - z)/zTau
}

INITIAL {
    rates(cai)
    z = zInf
}

PROCEDURE rates(ca (mM)) {
    LOCAL c
    UNITSOFF
    c = ca
    if (c < 1e-7) {
        c = 1e-7
    }
    zInf = 1/(1 + (0.00043/c)^4.8)
    UNITSON
}
