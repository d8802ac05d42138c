package kube

import (
	"strconv"
	"strings"
)

// Names of what the install manifest creates.
const (
	Namespace      = "outpost"
	ServiceAccount = "outpost-sa-clusteradmin"
	AgentName      = "outpost-agent"
)

// Install is what the install manifest of an environment carries.
type Install struct {
	EdgeKey string
	Async   bool
	Image   string
	// InsecurePoll lets the agent accept the server's self-signed
	// certificate, as the docker run line does.
	InsecurePoll bool
}

// Manifest returns the YAML documents that install the agent in a cluster:
// its namespace; its service account, bound to cluster-admin (the agent
// manages the cluster on the server's behalf, and creates the users'
// narrower service accounts); a secret holding the edge key; a claim for
// its data (identity key, state, command journal); and its deployment, one
// replica, recreated rather than rolled so two agents never share the data.
func Manifest(in Install) string {
	// A YAML double-quoted scalar reads Go's escapes as Go writes them,
	// but for \xNN, a byte that is not UTF-8, which YAML reads as U+00NN:
	// such bytes become U+FFFD first.
	q := func(s string) string { return strconv.Quote(strings.ToValidUTF8(s, "\uFFFD")) }
	var b strings.Builder
	w := func(s ...string) {
		for _, x := range s {
			b.WriteString(x)
		}
	}
	w(`apiVersion: v1
kind: Namespace
metadata:
  name: `, Namespace, `
---
apiVersion: v1
kind: ServiceAccount
metadata:
  name: `, ServiceAccount, `
  namespace: `, Namespace, `
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata:
  name: outpost-crb-clusteradmin
roleRef:
  apiGroup: rbac.authorization.k8s.io
  kind: ClusterRole
  name: cluster-admin
subjects:
- kind: ServiceAccount
  name: `, ServiceAccount, `
  namespace: `, Namespace, `
---
apiVersion: v1
kind: Secret
metadata:
  name: outpost-agent-key
  namespace: `, Namespace, `
type: Opaque
stringData:
  EDGE_KEY: `, q(in.EdgeKey), `
---
apiVersion: v1
kind: PersistentVolumeClaim
metadata:
  name: outpost-agent-data
  namespace: `, Namespace, `
spec:
  accessModes: [ReadWriteOnce]
  resources:
    requests:
      storage: 100Mi
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: `, AgentName, `
  namespace: `, Namespace, `
  labels:
    app: `, AgentName, `
spec:
  replicas: 1
  strategy:
    type: Recreate
  selector:
    matchLabels:
      app: `, AgentName, `
  template:
    metadata:
      labels:
        app: `, AgentName, `
    spec:
      serviceAccountName: `, ServiceAccount, `
      containers:
      - name: agent
        image: `, q(in.Image), `
        env:
        - name: EDGE
          value: "1"
`)
	if in.Async {
		w(`        - name: EDGE_ASYNC
          value: "1"
`)
	}
	if in.InsecurePoll {
		w(`        - name: EDGE_INSECURE_POLL
          value: "1"
`)
	}
	w(`        - name: OUTPOST_DATA_DIR
          value: /data
        - name: EDGE_KEY
          valueFrom:
            secretKeyRef:
              name: outpost-agent-key
              key: EDGE_KEY
        volumeMounts:
        - name: data
          mountPath: /data
      volumes:
      - name: data
        persistentVolumeClaim:
          claimName: outpost-agent-data
`)
	return b.String()
}
