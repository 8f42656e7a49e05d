// noop-webhook: an admission webhook that allows everything and decides nothing, in Go's
// net/http — the stack kube-apiserver's own tests use. The webhook benchmark installs it next
// to ours to show what calling *any* webhook costs the apiserver on the machine at hand,
// independent of the server's language.
//
//	noop-webhook PORT CERT_FILE KEY_FILE
package main

import (
	"crypto/tls"
	"encoding/json"
	"io"
	"log"
	"net/http"
	"os"
)

type request struct {
	Request *struct {
		UID string `json:"uid"`
	} `json:"request"`
}

type response struct {
	UID     string `json:"uid"`
	Allowed bool   `json:"allowed"`
}

type review struct {
	APIVersion string   `json:"apiVersion"`
	Kind       string   `json:"kind"`
	Response   response `json:"response"`
}

func allow(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(io.LimitReader(r.Body, 3<<20))
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	var in request
	if err := json.Unmarshal(body, &in); err != nil || in.Request == nil {
		http.Error(w, "not an AdmissionReview with a request", http.StatusBadRequest)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(review{
		APIVersion: "admission.k8s.io/v1",
		Kind:       "AdmissionReview",
		Response:   response{UID: in.Request.UID, Allowed: true},
	})
}

func main() {
	if len(os.Args) != 4 {
		log.Fatal("usage: noop-webhook PORT CERT_FILE KEY_FILE")
	}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /mutate", allow)
	mux.HandleFunc("POST /validate", allow)
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok")) })
	server := &http.Server{
		Addr:    "127.0.0.1:" + os.Args[1],
		Handler: mux,
		// HTTP/1.1 only, like uvicorn: the comparison is then of server stacks, not protocols.
		TLSNextProto: map[string]func(*http.Server, *tls.Conn, http.Handler){},
	}
	log.Fatal(server.ListenAndServeTLS(os.Args[2], os.Args[3]))
}
