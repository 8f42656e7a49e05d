"""runpod-kubelet: the composition root (the `runpod-kubelet` console script and `demo`).

Owns only wiring: which subcommand runs which process. Every process lives in its own package
(`webhook`, `binder`, `certs`, `sandbox`), and none of them imports this one.
"""

__version__ = "0.1.0"
