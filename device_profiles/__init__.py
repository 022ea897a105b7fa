"""The device profiles Vigie ships, one YAML file per instrument kind (README.md here).

A data package: the agent finds them with ``importlib.resources`` wherever it is
installed, from a wheel as from a checkout. A deployment may point ``profiles_dir``
at a folder of its own instead.
"""
