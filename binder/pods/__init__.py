"""The binder's pod lifecycle: executing plans on RunPod without ever leaking a GPU.

Owns everything between "a pod is bound to the virtual node" and "its RunPod pod is gone":
env resolution (`env`), ownership markers and names (`naming`), the pure create decisions and
budgets (`decisions`, `budgets`), creating (`creating`), status mirroring (`status`, `syncing`),
completion through the exit-marker wrapper (`completion`), deletion (`deleting`), orphan sweeps
(`sweeping`), metrics (`metrics`) and the controller that runs them (`controller`).

Does not own: the node object, lease, leader election or catalog (binder composition), nor the
kubelet API serving `kubectl logs`.
"""

from __future__ import annotations

from binder.pods.controller import PodController

__all__ = ["PodController"]
