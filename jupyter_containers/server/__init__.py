"""The jupyter-server extension: REST API under /jupyter-containers/api/ for the sidebar and widgets."""
