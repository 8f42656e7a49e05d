"""The admission webhook: validates pods aimed at the virtual node, enforces node policy and
writes the plan the binder executes.

Layers, top to bottom (imports flow downwards only):
- `cli`: flags -> settings, composition root, uvicorn with reloading TLS (`tls`).
- `app`: FastAPI routes, metrics; maps HTTP to reviews and back, nothing else.
- `caches`: the catalog ConfigMap and owning Jobs, kept in memory by watches (or a file).
- `admission`: AdmissionRequest -> Verdict for /mutate and /validate; pure.
- `inputs`, `resolving`, `reviews`, `problems`: pure pieces of the decision and the wire format.
- `configurations`: the Mutating/ValidatingWebhookConfiguration objects the chart installs.

Never talks to RunPod and holds no RunPod key (an import-linter contract checks it).
"""
