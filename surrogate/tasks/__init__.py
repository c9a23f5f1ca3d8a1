"""Secondary benchmarks for the ELM family: Long Range Arena and SHD / SHD-Adding.

Loaders read the standard files from a folder the user gives (nothing is downloaded);
``listops``, ``pathfinder`` and ``shd`` also generate files of those formats offline.
``classification`` trains ELM and LSTM encoders as sequence classifiers through the one
training loop (surrogate.train).
"""

from typing import Literal, get_args

#: the benchmark tasks, as the command line and configs name them
TaskName = Literal[
    "shd", "shd-adding", "listops", "text", "retrieval", "image", "pathfinder", "pathx"
]
TASK_NAMES: tuple[str, ...] = get_args(TaskName)
