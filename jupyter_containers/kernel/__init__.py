"""Kernels that live in environment containers: the shared launcher, the provisioner, warm sessions."""
