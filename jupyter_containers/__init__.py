"""jupyter-containers: reproducible, portable notebook environments that run in containers."""

__version__ = "0.1.0"
