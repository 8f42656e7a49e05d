module runpod-kubelet/benchmarks/noop_webhook

go 1.22
