"""Generic Kubernetes engine: knows nothing of Kubeflow or Rook."""
