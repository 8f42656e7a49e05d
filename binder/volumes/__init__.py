"""Network volumes for pods on the node: which one a pod mounts (`mounts`, pure).

Does not own the vocabulary of StorageClass and PV (`contract.volumes`).
"""

from __future__ import annotations
