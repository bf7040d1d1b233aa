"""Day two: what is done on an installed cluster, after the guide's steps — `status` and `doctor`, `expose`,
`kubeflow upgrade`, `down` (teardown) and `host wipe`."""
