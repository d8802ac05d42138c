package agentapi

import (
	"encoding/json"
	"net/http"
	"net/http/httputil"
	"slices"
	"strings"
	"time"

	"k8s.io/client-go/rest"

	"outpost/kube"
)

// kubePrefix is where the agent API passes requests on to the cluster's
// API server: /v2/kubernetes/api/v1/pods is the API server's /api/v1/pods.
const kubePrefix = "/v2/kubernetes"

// tokenTTL is how long a user's token lives: the API server's floor.
const tokenTTL = 10 * time.Minute

// kubeGateway passes requests to the cluster, with the credentials the
// server chose: a user's service account token, or the agent's own.
type kubeGateway struct {
	access *kube.Access
	agent  *httputil.ReverseProxy // the agent's own credentials
	user   *httputil.ReverseProxy // none but the bearer token the request names
}

func (a *API) newKubeGateway(cfg *rest.Config, access *kube.Access) (*kubeGateway, error) {
	host, _, err := rest.DefaultServerUrlFor(cfg)
	if err != nil {
		return nil, err
	}
	agentRT, err := rest.TransportFor(cfg)
	if err != nil {
		return nil, err
	}
	userRT, err := rest.TransportFor(rest.AnonymousClientConfig(cfg))
	if err != nil {
		return nil, err
	}
	proxy := func(rt http.RoundTripper, creds func(*httputil.ProxyRequest)) *httputil.ReverseProxy {
		return &httputil.ReverseProxy{
			Rewrite: func(pr *httputil.ProxyRequest) {
				pr.SetURL(host)
				pr.Out.URL.Path = strings.TrimSuffix(host.Path, "/") + strings.TrimPrefix(pr.In.URL.Path, kubePrefix)
				pr.Out.URL.RawPath = ""
				for _, h := range []string{"Authorization", kube.HeaderAs, kube.HeaderToken, "Impersonate-User", "Impersonate-Group", "Impersonate-Uid"} {
					pr.Out.Header.Del(h)
				}
				for k := range pr.Out.Header {
					if strings.HasPrefix(k, "Impersonate-Extra-") {
						pr.Out.Header.Del(k)
					}
				}
				creds(pr)
			},
			Transport:     rt,
			FlushInterval: -1, // watches stream
			ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
				if r.Context().Err() == nil {
					writeError(w, http.StatusBadGateway, "kubernetes API server at %s: %v", host, err)
				}
			},
		}
	}
	return &kubeGateway{
		access: access,
		agent:  proxy(agentRT, func(*httputil.ProxyRequest) {}),
		user: proxy(userRT, func(pr *httputil.ProxyRequest) {
			pr.Out.Header.Set("Authorization", "Bearer "+pr.In.Header.Get(kube.HeaderToken))
		}),
	}, nil
}

// kubeToken answers POST /v2/kubernetes/token {grant}: it makes the user's
// service account and bindings as the grant says, and a token of it.
func (a *API) kubeToken(w http.ResponseWriter, r *http.Request) error {
	if a.kube == nil {
		return errorf(http.StatusNotFound, "this agent runs on Docker: it has no Kubernetes API")
	}
	var g kube.Grant
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 64<<10)).Decode(&g); err != nil {
		return errorf(http.StatusBadRequest, "grant: %v", err)
	}
	if g.User == 0 || g.Env == 0 || !slices.Contains(kube.EnvRoles, g.Role) {
		return errorf(http.StatusBadRequest, "grant: want a user, an environment and one of the roles %v", kube.EnvRoles)
	}
	// Environment administrators reach the cluster with the agent's own
	// credentials: a token is never made for that role, so this endpoint
	// cannot mint cluster-admin, whoever reaches it.
	if g.Role == kube.EnvAdmin {
		return errorf(http.StatusBadRequest, "grant: no token is made for role %s", g.Role)
	}
	tok, exp, err := a.kube.access.Token(r.Context(), g, tokenTTL)
	if err != nil {
		return &statusError{status: http.StatusBadGateway, msg: "kubernetes", err: err}
	}
	writeJSON(w, http.StatusOK, map[string]any{"token": tok, "expires": exp})
	return nil
}

// kubePass passes a request under /v2/kubernetes/ to the API server, with
// the token the server sent or, when it says so, the agent's own
// credentials. A request with neither is refused: nothing reaches the
// cluster as the agent by default.
func (a *API) kubePass(w http.ResponseWriter, r *http.Request) {
	switch {
	case a.kube == nil:
		writeError(w, http.StatusNotFound, "this agent runs on Docker: it has no Kubernetes API")
	case r.Header.Get(kube.HeaderToken) != "":
		a.kube.user.ServeHTTP(passthroughWriter{w}, r)
	case r.Header.Get(kube.HeaderAs) == kube.AsAgent:
		a.kube.agent.ServeHTTP(passthroughWriter{w}, r)
	default:
		writeError(w, http.StatusForbidden, "%s: no user token and not as the agent", r.URL.Path)
	}
}
