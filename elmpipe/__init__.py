"""elmpipe's core: what every stage shares and nothing stage-specific.

The data stage (``simulations``) writes datasets, the fitting stage (``surrogate``) reads them,
and the orchestration (``pipelines``) chains both; they meet only here — in the dataset contract
(:mod:`elmpipe.dataset`), the error hierarchy with its exit codes (:mod:`elmpipe.errors`),
the checks of where output may go (:mod:`elmpipe.outputs`) and the restricted unpickler for files
from strangers (:mod:`elmpipe.safe_pickle`). Nothing here imports NEURON or PyTorch.
"""
