"""The webhook's TLS material: generate, store in a Secret, rotate, and inject as caBundle.

`material` is pure (crypto and the renewal decision); `secret_store` and `ca_injection` are
the Kubernetes edges; `cli` is `runpod-kubelet certs`.
"""
