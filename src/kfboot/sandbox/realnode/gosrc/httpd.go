// kfboot-httpd: a tiny HTTP server for kfboot's real-node tests.
//
//	GET /            200 "ok <hostname>" (then " <TAG>" when the env TAG is set)
//	GET /healthz     200 once READY_AFTER seconds (env, default 0) have passed since start, else 503
//	GET /bytes?n=N   N bytes of 'x', written in 64 KiB chunks (a long download for port-forward tests)
//	GET /dial?addr=HOST:PORT  opens a TCP connection from inside the pod (5 s timeout) and answers with
//	                 "connected" or "error: <the error>" (the real-node network test)
//	POST /validate   a validating admission webhook (admission.k8s.io/v1 AdmissionReview): allows every
//	                 object but those labelled kfboot-test/deny=yes; logs "review <kind> <ns>/<name> <verdict>"
//
// Listens on :$PORT (default 8080); with TLS_CERT and TLS_KEY (PEM file paths) it serves HTTPS.
package main

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"strconv"
	"time"
)

func main() {
	start := time.Now()
	readyAfter, _ := strconv.ParseFloat(os.Getenv("READY_AFTER"), 64)
	host, _ := os.Hostname()
	port := os.Getenv("PORT")
	if port == "" {
		port = "8080"
	}
	http.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		if tag := os.Getenv("TAG"); tag != "" {
			fmt.Fprintf(w, "ok %s %s\n", host, tag)
			return
		}
		fmt.Fprintf(w, "ok %s\n", host)
	})
	http.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) {
		if time.Since(start).Seconds() < readyAfter {
			w.WriteHeader(http.StatusServiceUnavailable)
			fmt.Fprintln(w, "starting")
			return
		}
		fmt.Fprintln(w, "ready")
	})
	http.HandleFunc("/bytes", func(w http.ResponseWriter, r *http.Request) {
		n, err := strconv.ParseInt(r.URL.Query().Get("n"), 10, 64)
		if err != nil || n < 0 {
			http.Error(w, "n must be a byte count", http.StatusBadRequest)
			return
		}
		w.Header().Set("Content-Length", strconv.FormatInt(n, 10))
		chunk := make([]byte, 65536)
		for i := range chunk {
			chunk[i] = 'x'
		}
		for n > 0 {
			k := int64(len(chunk))
			if n < k {
				k = n
			}
			if _, err := w.Write(chunk[:k]); err != nil {
				return
			}
			n -= k
		}
	})
	http.HandleFunc("/dial", func(w http.ResponseWriter, r *http.Request) {
		conn, err := net.DialTimeout("tcp", r.URL.Query().Get("addr"), 5*time.Second)
		if err != nil {
			fmt.Fprintf(w, "error: %v\n", err)
			return
		}
		conn.Close()
		fmt.Fprintln(w, "connected")
	})
	http.HandleFunc("/validate", validate)
	cert, key := os.Getenv("TLS_CERT"), os.Getenv("TLS_KEY")
	var err error
	if cert != "" && key != "" {
		fmt.Printf("kfboot-httpd listening on :%s (TLS)\n", port)
		err = http.ListenAndServeTLS(":"+port, cert, key, nil)
	} else {
		fmt.Printf("kfboot-httpd listening on :%s\n", port)
		err = http.ListenAndServe(":"+port, nil)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

type review struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Request    *struct {
		UID       string `json:"uid"`
		Name      string `json:"name"`
		Namespace string `json:"namespace"`
		Kind      struct {
			Kind string `json:"kind"`
		} `json:"kind"`
		Object struct {
			Metadata struct {
				Labels map[string]string `json:"labels"`
			} `json:"metadata"`
		} `json:"object"`
	} `json:"request"`
}

func validate(w http.ResponseWriter, r *http.Request) {
	var rv review
	if err := json.NewDecoder(r.Body).Decode(&rv); err != nil || rv.Request == nil {
		http.Error(w, "an AdmissionReview with a request is expected", http.StatusBadRequest)
		return
	}
	q := rv.Request
	allowed := q.Object.Metadata.Labels["kfboot-test/deny"] != "yes"
	verdict := "allowed"
	status := map[string]interface{}{"code": 200}
	if !allowed {
		verdict = "denied"
		status = map[string]interface{}{"code": 403, "message": "denied by the kfboot test webhook"}
	}
	fmt.Printf("review %s %s/%s %s\n", q.Kind.Kind, q.Namespace, q.Name, verdict)
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(map[string]interface{}{
		"apiVersion": "admission.k8s.io/v1",
		"kind":       "AdmissionReview",
		"response":   map[string]interface{}{"uid": q.UID, "allowed": allowed, "status": status},
	})
}
