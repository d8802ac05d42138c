package web_test

import (
	"cmp"
	"fmt"
	"net/http"
	"net/url"
	"slices"

	"outpost/kube"
	"outpost/web"
)

func (f *fakeBackend) KubeScope(string, uint64) (string, []string, error) {
	return cmp.Or(f.kubeRole, kube.EnvAdmin), f.kubeNS, f.err
}

func (f *fakeBackend) NamespaceAccess(uint64) (web.NamespaceAccess, error) { return f.nsAccess, f.err }

func (f *fakeBackend) SetNamespaceAccess(_ string, _ uint64, ns string, users, teams []uint64) error {
	if slices.Contains(users, 99) {
		return fmt.Errorf("no user with id [99]: %w", web.ErrInvalid)
	}
	f.nsSet = append(f.nsSet, nsSetCall{ns, users, teams})
	return nil
}

// post sends a same-origin form logged in and returns the status and body.
func (s *site) post(target, form string) (int, string) {
	s.t.Helper()
	v, err := url.ParseQuery(form)
	if err != nil {
		s.t.Fatal(err)
	}
	res := s.do(http.MethodPost, target, s.token, v, nil)
	return res.StatusCode, bodyOf(s.t, res)
}
