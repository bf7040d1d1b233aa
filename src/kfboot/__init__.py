"""kfboot: turn a bare Kubernetes cluster into a working Kubeflow environment."""

__version__ = "0.1.0"
