"""Process plumbing shared below webhook and binder: structured logs with redaction, Kubernetes
connection and list-then-watch caches. No RunPod knowledge and no product decisions live here.
"""
