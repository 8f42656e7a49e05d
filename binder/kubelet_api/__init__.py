"""The kubelet API of the virtual node: `kubectl logs` from RunPod's log stream.

Layout: `server` (TLS, uvicorn, the entry point `serve_kubelet_api`) → `app` (routes and the
auth gate) → `auth` (client certificate, TokenReview, SubjectAccessReview), `targets` (which
RunPod pod), `streaming` (timing of one answer over RunPod's SSE stream) → `options` (the
query) and `shaping` (what is shown, and how). `tls` owns the serving certificate, `peers` the
client certificate of each connection. A finished pod's logs come from
`binder.retained_logs`, filled by the completion reader (RunPod keeps none after termination).
Import `binder.kubelet_api.server` for the entry point; this package module imports nothing,
so the pure parts load without FastAPI or uvicorn.
"""
