// kfboot-gateway: a STAND-IN for Kubeflow's Istio ingress gateway on the sandbox's real nodes, where
// Envoy cannot be built. It does, for the login, what the Kubeflow 26.03 / 1.11 bundle configures the
// gateway to do (the objects it mirrors, all in the rendered bundle):
//
//   - VirtualService auth/dex: prefix /dex/ → dex.auth.svc.cluster.local:5556;
//   - VirtualService oauth2-proxy/oauth2-proxy: prefix /oauth2/ → oauth2-proxy.oauth2-proxy.svc.cluster.local:80;
//   - AuthorizationPolicy istio-system/istio-ingressgateway-oauth2-proxy (action CUSTOM, provider
//     oauth2-proxy) on every other path of a request without an Authorization header: Envoy's HTTP
//     ext_authz with the mesh's extensionProviders entry (ConfigMap istio-system/istio, envoyExtAuthzHttp:
//     the check goes to oauth2-proxy with the request's method and path and its authorization and cookie
//     headers; allowed → the response's authorization and x-auth-request-* headers go upstream; denied →
//     the check's status and body go back with content-type and set-cookie, plus Location and
//     WWW-Authenticate, which Envoy adds to any allowed_client_headers list (envoyproxy/envoy
//     api/envoy/extensions/filters/http/ext_authz/v3/ext_authz.proto, AuthorizationResponse:
//     "Path, Status, Content-Length, WWWAuthenticate and Location are automatically added");
//   - the order ext_authz, then the JWT check below is the one the login needs (oauth2-proxy's
//     Authorization header is what the JWT check reads); Istio's actual filter order is not checked here;
//   - RequestAuthentication istio-system/dex-jwt: a Bearer token must be an RS256 JWT of issuer
//     http://dex.auth.svc.cluster.local:5556/dex, checked against the issuer's JWKS (OIDC discovery), its
//     email and groups claims put in kubeflow-userid / kubeflow-groups; AuthorizationPolicy
//     istio-ingressgateway-require-jwt: no valid token → 403 "RBAC: access denied";
//   - then the central dashboard's place: a small page saying who is signed in (kfboot's stand-in).
//
// Readiness on :15021/healthz/ready as Istio's status port. Names are resolved through the cluster's DNS.
// Env: PORT (8080), DEX, OAUTH2_PROXY, ISSUER override the bundle's in-cluster addresses.
package main

import (
	"crypto"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"html"
	"io"
	"log"
	"math/big"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"strings"
	"time"
)

func env(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}

var (
	dexURL    = env("DEX", "http://dex.auth.svc.cluster.local:5556")
	oauth2URL = env("OAUTH2_PROXY", "http://oauth2-proxy.oauth2-proxy.svc.cluster.local:80")
	issuer    = env("ISSUER", "http://dex.auth.svc.cluster.local:5556/dex")
	client    = &http.Client{Timeout: 20 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	toCheck   = []string{"Authorization", "Cookie"}
	onAllow   = []string{"Authorization", "Path", "X-Auth-Request-Email", "X-Auth-Request-Groups", "X-Auth-Request-User"}
	onDeny    = []string{"Content-Type", "Set-Cookie", "Location", "Www-Authenticate"}
)

func proxyTo(raw string) http.Handler {
	u, err := url.Parse(raw)
	if err != nil {
		log.Fatal(err)
	}
	return httputil.NewSingleHostReverseProxy(u)
}

// extAuthz asks oauth2-proxy; true when allowed (the request then carries the allowed headers)
func extAuthz(w http.ResponseWriter, r *http.Request) bool {
	check, err := http.NewRequest(r.Method, oauth2URL+r.URL.RequestURI(), nil)
	if err != nil {
		http.Error(w, err.Error(), http.StatusForbidden)
		return false
	}
	check.Host = r.Host
	for _, h := range toCheck {
		for _, v := range r.Header.Values(h) {
			check.Header.Add(h, v)
		}
	}
	resp, err := client.Do(check)
	if err != nil {
		log.Printf("ext_authz: %v", err)
		http.Error(w, "ext_authz: "+err.Error(), http.StatusForbidden)
		return false
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		for _, h := range onAllow {
			if vs := resp.Header.Values(h); len(vs) > 0 {
				r.Header[http.CanonicalHeaderKey(h)] = vs
			}
		}
		return true
	}
	for _, h := range onDeny {
		for _, v := range resp.Header.Values(h) {
			w.Header().Add(h, v)
		}
	}
	w.WriteHeader(resp.StatusCode)
	w.Write(body)
	return false
}

type claims struct {
	Iss    string   `json:"iss"`
	Exp    float64  `json:"exp"`
	Email  string   `json:"email"`
	Groups []string `json:"groups"`
}

func b64(s string) ([]byte, error) { return base64.RawURLEncoding.DecodeString(strings.TrimRight(s, "=")) }

func getJSON(u string, into any) error {
	resp, err := client.Get(u)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		return fmt.Errorf("%s: HTTP %d", u, resp.StatusCode)
	}
	return json.NewDecoder(resp.Body).Decode(into)
}

// verify checks an RS256 JWT of the issuer against its JWKS (fetched through OIDC discovery)
func verify(token string) (*claims, error) {
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return nil, errors.New("Jwt is not in the form of Header.Payload.Signature")
	}
	var hdr struct{ Alg, Kid string }
	raw, err := b64(parts[0])
	if err != nil || json.Unmarshal(raw, &hdr) != nil || hdr.Alg != "RS256" {
		return nil, errors.New("Jwt header is an invalid JSON or not RS256")
	}
	var disc struct {
		JwksURI string `json:"jwks_uri"`
	}
	if err := getJSON(issuer+"/.well-known/openid-configuration", &disc); err != nil {
		return nil, err
	}
	var jwks struct{ Keys []struct{ Kid, N, E string } }
	if err := getJSON(disc.JwksURI, &jwks); err != nil {
		return nil, err
	}
	sig, err := b64(parts[2])
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256([]byte(parts[0] + "." + parts[1]))
	for _, k := range jwks.Keys {
		if hdr.Kid != "" && k.Kid != hdr.Kid {
			continue
		}
		n, err1 := b64(k.N)
		e, err2 := b64(k.E)
		if err1 != nil || err2 != nil {
			continue
		}
		pub := &rsa.PublicKey{N: new(big.Int).SetBytes(n), E: int(new(big.Int).SetBytes(e).Int64())}
		if rsa.VerifyPKCS1v15(pub, crypto.SHA256, sum[:], sig) != nil {
			continue
		}
		var c claims
		payload, err := b64(parts[1])
		if err != nil || json.Unmarshal(payload, &c) != nil {
			return nil, errors.New("Jwt payload is an invalid JSON")
		}
		if c.Iss != issuer {
			return nil, errors.New("Jwt issuer is not configured")
		}
		if float64(time.Now().Unix()) > c.Exp {
			return nil, errors.New("Jwt is expired")
		}
		return &c, nil
	}
	return nil, errors.New("Jwt verification fails")
}

const page = `<!doctype html>
<html><head><meta charset="utf-8"><title>Kubeflow (kfboot real node)</title></head>
<body><h1>Kubeflow on a kfboot real node</h1>
<p id="user">Signed in as <b>%s</b> through Kubeflow's Dex and oauth2-proxy.</p>
<p>kfboot's gateway stand-in: the central dashboard would be here. <a href="/oauth2/sign_out">Sign out</a></p>
</body></html>
`

func gateway(w http.ResponseWriter, r *http.Request) {
	if r.Header.Get("Authorization") == "" && !extAuthz(w, r) {
		return
	}
	token, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok {
		http.Error(w, "RBAC: access denied", http.StatusForbidden)
		return
	}
	c, err := verify(token)
	if err != nil {
		log.Printf("jwt: %v", err)
		http.Error(w, err.Error(), http.StatusUnauthorized)
		return
	}
	log.Printf("%s %s kubeflow-userid=%s", r.Method, r.URL.Path, c.Email)
	if strings.Contains(r.Header.Get("Accept"), "text/html") {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		fmt.Fprintf(w, page, html.EscapeString(c.Email))
		return
	}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(map[string]any{"upstream": "kfboot-gateway", "kubeflow-userid": c.Email, "kubeflow-groups": c.Groups})
}

func main() {
	mux := http.NewServeMux()
	mux.Handle("/dex/", proxyTo(dexURL))
	mux.Handle("/oauth2/", proxyTo(oauth2URL))
	mux.HandleFunc("/", gateway)
	status := http.NewServeMux()
	status.HandleFunc("/healthz/ready", func(w http.ResponseWriter, r *http.Request) { fmt.Fprintln(w, "ready") })
	go func() { log.Fatal(http.ListenAndServe(":15021", status)) }()
	addr := ":" + env("PORT", "8080")
	log.Printf("kfboot-gateway listening on %s (dex %s, oauth2-proxy %s)", addr, dexURL, oauth2URL)
	log.Fatal(http.ListenAndServe(addr, mux))
}
