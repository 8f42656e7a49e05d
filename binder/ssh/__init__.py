"""SSH into RunPod pods: the binder's key pair, where a pod's sshd is, and dialing it.

The kubelet API's `exec`, `attach` and `portForward` (`binder.kubelet_api`) are carried over
SSH sessions and `direct-tcpip` channels opened by a `SshDialer` (`dialing`).
"""
