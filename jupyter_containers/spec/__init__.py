"""Environment specs: the model, the TOML parser, importers and capture."""

from .model import Environment, Resources, SpecFile
from .parse import find_spec_file, load_environment, load_spec, parse_resources

__all__ = ["Environment", "Resources", "SpecFile", "find_spec_file", "load_environment", "load_spec", "parse_resources"]
