"""The kubelet API of the virtual node: `kubectl logs` from RunPod's log stream, and
`kubectl exec`, `attach` and `port-forward` over SSH to the pod's sshd.

Layout: `server` (TLS, uvicorn, the entry point `serve_kubelet_api`) → `app` (routes and the
auth gate) → `auth` (client certificate, TokenReview, SubjectAccessReview), `targets` (which
RunPod pod), `streaming` (timing of one answer over RunPod's SSE stream) → `options` (the
query) and `shaping` (what is shown, and how). `tls` owns the serving certificate, `peers` the
client certificate of each connection. A finished pod's logs come from
`binder.retained_logs`, filled by the completion reader (RunPod keeps none after termination).

Streaming (exec, attach, port-forward): `upgrade` takes upgrade requests over from uvicorn →
`streams` (protocol choice, target, SSH dial) → `remotecommand` / `portforward` (the kubelet's
protocols mapped onto SSH sessions and `direct-tcpip` channels), over `spdy_session` (SPDY/3.1,
framing in `spdy`) or `ws_session` (WebSocket, framing in `websocket`); `stream_targets` judges
which sshd a request may reach. SSH itself is `binder.ssh`'s (`SshDialer`).
Import `binder.kubelet_api.server` for the entry point; this package module imports nothing,
so the pure parts load without FastAPI or uvicorn.
"""
