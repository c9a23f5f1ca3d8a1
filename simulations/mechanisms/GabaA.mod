COMMENT
Inhibitory GABA_A synapse, written for elmpipe from docs/mechanisms.md (the
synapse behind NeuronIO's inhibitory inputs).  One dual-exponential
conductance g = gmax (B - A); an event of weight w adds w*f to A and B, with f
chosen so that one event of weight 1 peaks at exactly gmax.  Every event is
released (no random numbers, no lock-out of events at t = 0).
ENDCOMMENT

NEURON {
    THREADSAFE
    POINT_PROCESS GabaA
    NONSPECIFIC_CURRENT i
    GLOBAL tau_r, tau_d  : the same for every synapse: one decay factor per step
    RANGE gmax, e, i, g, factor
}

UNITS {
    (nA) = (nanoamp)
    (mV) = (millivolt)
    (uS) = (microsiemens)
}

PARAMETER {
    tau_r = 0.2 (ms)
    tau_d = 8 (ms)
    gmax = 0.001 (uS)
    e = -80 (mV)
}

ASSIGNED {
    v (mV)
    i (nA)
    g (uS)
    factor (1)
}

STATE {
    A (1)
    B (1)
}

INITIAL {
    A = 0
    B = 0
    factor = peak_factor(tau_r, tau_d)
}

BREAKPOINT {
    SOLVE kinetics METHOD cnexp
    g = gmax*(B - A)
    i = g*(v - e)
    CONDUCTANCE g  : di/dv = g exactly: one evaluation per step, not two
}

DERIVATIVE kinetics {
    A' = -A/tau_r
    B' = -B/tau_d
}

NET_RECEIVE (weight (1)) {
    A = A + weight*factor
    B = B + weight*factor
}

FUNCTION peak_factor(tau_r (ms), tau_d (ms)) (1) {
    : 1/(exp(-tp/tau_d) - exp(-tp/tau_r)) at the peak time tp of B - A
    LOCAL tp
    tp = tau_r*tau_d/(tau_d - tau_r)*log(tau_d/tau_r)
    peak_factor = 1/(exp(-tp/tau_d) - exp(-tp/tau_r))
}
