// kfboot-httpd: a tiny HTTP server for kfboot's real-node tests.
//
//	GET /            200 "ok <hostname>" (then " <TAG>" when the env TAG is set)
//	GET /healthz     200 once READY_AFTER seconds (env, default 0) have passed since start, else 503
//	GET /bytes?n=N   N bytes of 'x', written in 64 KiB chunks (a long download for port-forward tests)
//	GET /dial?addr=HOST:PORT  opens a TCP connection from inside the pod (5 s timeout) and answers with
//	                 "connected" or "error: <the error>" (the real-node network test)
//
// Listens on :$PORT (default 8080).
package main

import (
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
	fmt.Printf("kfboot-httpd listening on :%s\n", port)
	if err := http.ListenAndServe(":"+port, nil); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
