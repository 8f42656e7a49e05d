"""A local emulator of RunPod's REST v2 API: the project's test RunPod and a try-it-free mode.

Layout (entry points -> service -> pure parts):

    cli        `runpod-kubelet sandbox` (uvicorn on a port)
    testing    `running_sandbox(...)`: the emulator on a free port in a thread + `SandboxAdmin`
    app        FastAPI composition: gateway middleware, /v2 routes, /_sandbox admin routes
    gateway    auth, rate limits, fault injection, RunPod-shaped 404/405 (ASGI middleware)
    routes     thin /v2 handlers          admin   thin /_sandbox handlers
    account    the emulated account: pods, state machine timers, containers, billing, logs
    pods       pod record, rendering, transitions    validation  request bodies -> 422/400
    catalog    GPU types, data centers, stock, placement, catalogue answers
    interpreter  the tiny `sh` containers run      logbook  per-pod log lines + SSE framing
    ratelimit  minute/hour/day windows + headers    faults  scripted misbehaviour
    scenario   configuration model                  problems  problem+json errors
"""
