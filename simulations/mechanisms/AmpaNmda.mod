COMMENT
Excitatory synapse with an AMPA and an NMDA conductance on one point process,
written for elmpipe from docs/mechanisms.md (the synapse behind NeuronIO's
excitatory inputs).

Each receptor is a dual exponential, g = gmax (B - A), with rise state A and
decay state B.  An event of weight w adds w*f to both, where f normalises the
difference so that one event of weight 1 peaks at exactly gmax.  Both receptors
share gmax (NMDA scaled by nmda_ratio, 1 in NeuronIO).  NMDA is blocked by
magnesium instantaneously, Jahr-Stevens form with slope 0.08/mV:

    mgblock = 1/(1 + exp(-0.08 v) mg/3.57)

Every event is released: the release machinery of the original synapse reduces
to that with Use = 1 and no depression or facilitation, and this mechanism has no
random numbers and no lock-out of events at t = 0.

For speed, the time constants are GLOBAL (the same for every instance, so each
state's decay factor is computed once per step, not once per synapse), and the
current's derivative is given exactly (CONDUCTANCE), so the current is computed
once per step instead of twice for a finite difference:

    di/dv = g_AMPA + g_NMDA + g_NMDA_open*(v - e)*dmgblock/dv,
    dmgblock/dv = 0.08*mgblock*(1 - mgblock)
ENDCOMMENT

NEURON {
    THREADSAFE
    POINT_PROCESS AmpaNmda
    NONSPECIFIC_CURRENT i
    GLOBAL tau_r_AMPA, tau_d_AMPA, tau_r_NMDA, tau_d_NMDA
    RANGE gmax, nmda_ratio, e, mg
    RANGE i, i_AMPA, i_NMDA, g, g_AMPA, g_NMDA, mgblock, didv
    RANGE factor_AMPA, factor_NMDA
}

UNITS {
    (nA) = (nanoamp)
    (mV) = (millivolt)
    (uS) = (microsiemens)
    (mM) = (milli/liter)
}

PARAMETER {
    tau_r_AMPA = 0.3 (ms)
    tau_d_AMPA = 3 (ms)
    tau_r_NMDA = 2 (ms)
    tau_d_NMDA = 70 (ms)
    gmax = 0.0004 (uS)
    nmda_ratio = 1 (1)
    e = 0 (mV)
    mg = 1 (mM)
}

ASSIGNED {
    v (mV)
    i (nA)
    i_AMPA (nA)
    i_NMDA (nA)
    g (uS)
    g_AMPA (uS)
    g_NMDA (uS)
    mgblock (1)
    didv (uS)
    factor_AMPA (1)
    factor_NMDA (1)
}

STATE {
    A_AMPA (1)
    B_AMPA (1)
    A_NMDA (1)
    B_NMDA (1)
}

INITIAL {
    A_AMPA = 0
    B_AMPA = 0
    A_NMDA = 0
    B_NMDA = 0
    factor_AMPA = peak_factor(tau_r_AMPA, tau_d_AMPA)
    factor_NMDA = peak_factor(tau_r_NMDA, tau_d_NMDA)
}

BREAKPOINT {
    LOCAL g_open
    SOLVE kinetics METHOD cnexp
    UNITSOFF
    mgblock = 1/(1 + exp(-0.08*v)*mg/3.57)
    g_open = gmax*nmda_ratio*(B_NMDA - A_NMDA)
    g_AMPA = gmax*(B_AMPA - A_AMPA)
    g_NMDA = g_open*mgblock
    g = g_AMPA + g_NMDA
    i_AMPA = g_AMPA*(v - e)
    i_NMDA = g_NMDA*(v - e)
    i = i_AMPA + i_NMDA
    didv = g + g_open*(v - e)*0.08*mgblock*(1 - mgblock)
    UNITSON
    CONDUCTANCE didv
}

DERIVATIVE kinetics {
    A_AMPA' = -A_AMPA/tau_r_AMPA
    B_AMPA' = -B_AMPA/tau_d_AMPA
    A_NMDA' = -A_NMDA/tau_r_NMDA
    B_NMDA' = -B_NMDA/tau_d_NMDA
}

NET_RECEIVE (weight (1)) {
    A_AMPA = A_AMPA + weight*factor_AMPA
    B_AMPA = B_AMPA + weight*factor_AMPA
    A_NMDA = A_NMDA + weight*factor_NMDA
    B_NMDA = B_NMDA + weight*factor_NMDA
}

FUNCTION peak_factor(tau_r (ms), tau_d (ms)) (1) {
    : 1/(exp(-tp/tau_d) - exp(-tp/tau_r)) at the peak time tp of B - A
    LOCAL tp
    tp = tau_r*tau_d/(tau_d - tau_r)*log(tau_d/tau_r)
    peak_factor = 1/(exp(-tp/tau_d) - exp(-tp/tau_r))
}
