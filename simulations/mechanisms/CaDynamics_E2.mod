COMMENT
Sub-membrane calcium shell, "CaDynamics_E2" of the Hay et al. (2011) channel
library, written for elmpipe from docs/mechanisms.md.

    dcai/dt = -10000 ica gamma / (2 F depth) - (cai - minCai)/decay

with ica in mA/cm2, depth in um and cai in mM; gamma is the fraction of entering
calcium that stays free.  There is deliberately no INITIAL block: cai starts at
the ion's initial value (cai0_ca_ion, NEURON's default 5e-5 mM) and relaxes
towards minCai, as in the model that generated NeuronIO.
ENDCOMMENT

NEURON {
    THREADSAFE
    SUFFIX CaDynamics_E2
    USEION ca READ ica WRITE cai
    RANGE decay, gamma, minCai, depth
}

UNITS {
    (mV) = (millivolt)
    (mA) = (milliamp)
    FARADAY = (faraday) (coulombs)
    (molar) = (1/liter)
    (mM) = (millimolar)
    (um) = (micron)
}

PARAMETER {
    gamma = 0.05 (1)
    decay = 80 (ms)
    depth = 0.1 (um)
    minCai = 1e-4 (mM)
}

ASSIGNED {
    ica (mA/cm2)
}

STATE { cai (mM) }

BREAKPOINT {
    SOLVE states METHOD cnexp
}

DERIVATIVE states {
    UNITSOFF
    cai' = -10000*ica*gamma/(2*FARADAY*depth) - (cai - minCai)/decay
    UNITSON
}
