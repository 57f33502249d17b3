"""Sharing environments: bundles, registries, binder/ export, notebooks' run records, reproduce."""
