"""Secondary benchmarks for the ELM family: Long Range Arena and SHD / SHD-Adding.

Loaders read the standard files from a folder the user gives (nothing is downloaded);
``listops``, ``pathfinder`` and ``shd`` also generate files of those formats offline.
``train.fit_task`` trains any model of ``surrogate.models`` as a sequence classifier.
"""
