# Project configuration, read by every front end started in this folder (CLI, server, magics).
c = get_config()  # noqa: F821 - provided by traitlets when it loads this file

# containers.toml asks for gpus = "all". On an engine that grants no GPUs (a laptop, CI) run on the CPU instead
# of refusing, with a warning: the same notebook then uses every GPU where there are some, unchanged.
c.DockerBackend.gpu_fallback = "cpu"
