"""The sandbox: a real local control plane (etcd, kube-apiserver, controller-manager, scheduler) with nodes,
pods and operators simulated by kwok. :mod:`.cluster` is the facade (up, down, status)."""
