"""Spec → Dockerfile → image, with content-addressed tags and a lock of what was installed."""
