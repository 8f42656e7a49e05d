"""The vocabulary the webhook and the binder share, defined once.

Owns: annotation keys (`annotations`), the RunPod GPU catalog as the binder publishes it and the
webhook reads it (`catalog`), which container of a pod runs on RunPod and which are left out
(`containers`), the resolved plan and its annotation encoding (`plan`), node policy and the
node's identity (`policy`), and the settings both processes read (`settings`).

Does not own: any I/O. Nothing here talks to Kubernetes or RunPod; everything is a plain
pydantic model or a pure function, so both sides can import it without dragging the other in.
"""
