"""Who the caller is and which reviews must allow it, decided as the kubelet decides."""

from __future__ import annotations

from binder.kubelet_api.auth import (
    AccessCheck,
    Identity,
    access_checks,
    forbidden_message,
    identity_from_certificate,
    identity_from_token_review,
    subject_access_review_body,
)

APISERVER_CERT = {
    "subject": (
        (("organizationName", "system:masters"),),
        (("commonName", "kube-apiserver-kubelet-client"),),
    ),
    "issuer": ((("commonName", "cluster-ca"),),),
}


def test_a_client_certificate_names_the_user_by_cn_and_groups_by_o() -> None:
    identity = identity_from_certificate(APISERVER_CERT)
    assert identity == Identity(
        user="kube-apiserver-kubelet-client",
        groups=("system:masters", "system:authenticated"),
        via="certificate",
    )


def test_a_certificate_without_a_common_name_authenticates_nobody() -> None:
    assert identity_from_certificate({"subject": ((("organizationName", "x"),),)}) is None
    assert identity_from_certificate({}) is None


def test_a_token_review_answer_gives_the_user_only_when_authenticated() -> None:
    review = {
        "status": {
            "authenticated": True,
            "user": {
                "username": "system:serviceaccount:ns:reader",
                "uid": "u-1",
                "groups": ["system:serviceaccounts"],
                "extra": {"authentication.kubernetes.io/pod-name": ["p"]},
            },
        }
    }
    identity = identity_from_token_review(review)
    assert identity is not None
    assert identity.user == "system:serviceaccount:ns:reader"
    assert identity.groups == ("system:serviceaccounts", "system:authenticated")
    assert identity.uid == "u-1"
    assert identity.extra == (("authentication.kubernetes.io/pod-name", ("p",)),)
    assert identity_from_token_review({"status": {"authenticated": False}}) is None
    assert identity_from_token_review({"status": {"authenticated": True, "user": {}}}) is None
    assert identity_from_token_review({}) is None


def test_container_logs_need_nodes_log_or_nodes_proxy_on_this_node() -> None:
    checks = access_checks(method="GET", path="/containerLogs/ns/p/c", node="virtual-runpod")
    assert checks == [
        AccessCheck(verb="get", node="virtual-runpod", subresource="log"),
        AccessCheck(verb="get", node="virtual-runpod", subresource="proxy"),
    ]


def test_other_kubelet_paths_map_to_the_kubelets_subresources_and_verbs() -> None:
    assert access_checks(method="POST", path="/exec/ns/p/c", node="n") == [
        AccessCheck("create", "n", "proxy")
    ]
    assert access_checks(method="GET", path="/stats/summary", node="n") == [AccessCheck("get", "n", "stats")]
    assert access_checks(method="GET", path="/metrics/resource", node="n") == [
        AccessCheck("get", "n", "metrics")
    ]
    assert access_checks(method="GET", path="/logs/messages", node="n") == [AccessCheck("get", "n", "log")]


def test_the_access_review_asks_about_the_node_for_the_callers_identity() -> None:
    identity = Identity(
        user="alice", groups=("devs", "system:authenticated"), uid="u1", extra=(("k", ("v",)),)
    )
    body = subject_access_review_body(identity, AccessCheck("get", "virtual-runpod", "log"))
    assert body == {
        "apiVersion": "authorization.k8s.io/v1",
        "kind": "SubjectAccessReview",
        "spec": {
            "user": "alice",
            "groups": ["devs", "system:authenticated"],
            "uid": "u1",
            "extra": {"k": ["v"]},
            "resourceAttributes": {
                "verb": "get",
                "group": "",
                "version": "v1",
                "resource": "nodes",
                "subresource": "log",
                "name": "virtual-runpod",
            },
        },
    }


def test_a_denial_says_who_was_refused_what_in_the_kubelets_words() -> None:
    checks = access_checks(method="GET", path="/containerLogs/ns/p/c", node="n")
    assert (
        forbidden_message(Identity(user="bob"), checks)
        == "Forbidden (user=bob, verb=get, resource=nodes, subresource(s)=[log proxy])"
    )
