: An h-current (HCN) of the example model's own writing, for docs/own-model.md: one activation
: gate, opened by hyperpolarisation, with a bell-shaped time constant; a mixed cation current
: reversing at -45 mV.

NEURON {
    SUFFIX IhToy
    NONSPECIFIC_CURRENT ihcn
    RANGE gbar, ehcn
}

UNITS {
    (mA) = (milliamp)
    (mV) = (millivolt)
    (S) = (siemens)
}

PARAMETER {
    gbar = 1e-4 (S/cm2)
    ehcn = -45 (mV)
    vhalf = -88 (mV)     : half activation
    slope = 8 (mV)
    tau_min = 10 (ms)
    tau_peak = 90 (ms)   : added at vhalf
}

ASSIGNED {
    v (mV)
    ihcn (mA/cm2)
    minf
    tau (ms)
}

STATE { m }

BREAKPOINT {
    SOLVE states METHOD cnexp
    ihcn = gbar * m * (v - ehcn)
}

INITIAL {
    rates(v)
    m = minf
}

DERIVATIVE states {
    rates(v)
    m' = (minf - m) / tau
}

PROCEDURE rates(v (mV)) {
    minf = 1 / (1 + exp((v - vhalf) / slope))
    tau = tau_min + tau_peak * exp(-((v - vhalf) / (2 * slope)) ^ 2)
}
