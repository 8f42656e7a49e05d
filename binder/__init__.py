"""The binder: the only process that talks to RunPod.

Layout (entry point -> services -> adapters): `cli` parses flags and runs `composition`, the one
composition root that builds the Kubernetes and RunPod clients, serves health, runs leader
election (`election`) and, only while leading, the leader tasks: the virtual node (`node`), its
heartbeat Lease (`leasing`), the GPU catalog ConfigMap (`catalog_publisher`), the pod lifecycle
(`pods`) and the kubelet API (`kubelet_api`). Settings live in `settings`.
"""
