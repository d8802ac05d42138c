package server

import (
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"

	"github.com/robfig/cron/v3"

	"outpost/server/store"
)

// Edge jobs: /api/edge-jobs. A job is a cron expression and a script run on
// the host of every environment it targets (listed, or through edge
// groups); the reconciler (reconcile.go) sends job.upsert and job.remove.

// Audit actions of edge jobs.
const (
	auditJobCreate  = "edge_job.create"
	auditJobUpdate  = "edge_job.update"
	auditJobDelete  = "edge_job.delete"
	auditJobCollect = "edge_job.collect"
)

// maxJobScript bounds a job's script.
const maxJobScript = 64 << 10

// cronParser accepts what the agent's scheduler accepts: five fields, or six
// with seconds first, or a descriptor such as @hourly.
var cronParser = cron.NewParser(cron.SecondOptional | cron.Minute | cron.Hour | cron.Dom | cron.Month | cron.Dow | cron.Descriptor)

func jobTarget(id uint64) string { return "edge job " + strconv.FormatUint(id, 10) }

type jobRequest struct {
	Name           string    `json:"name"`
	Cron           *string   `json:"cron"`
	Script         *string   `json:"script"`
	EnvironmentIDs *[]uint64 `json:"environmentIds"`
	EdgeGroupIDs   *[]uint64 `json:"edgeGroupIds"`
	Collect        *bool     `json:"collectLogs"`
}

type jobView struct {
	store.EdgeJob
	Script string `json:"script,omitempty"`
}

func (s *Server) validateJob(req *jobRequest, create bool) []string {
	var problems []string
	if create && strings.TrimSpace(req.Name) == "" {
		problems = append(problems, "name: required")
	}
	if len(req.Name) > 128 {
		problems = append(problems, "name: at most 128 characters")
	}
	if p := plainText("name", req.Name); p != "" {
		problems = append(problems, p)
	}
	if create && req.Cron == nil {
		problems = append(problems, "cron: required")
	}
	if req.Cron != nil {
		if _, err := cronParser.Parse(*req.Cron); err != nil {
			problems = append(problems, fmt.Sprintf("cron %q: %v (five fields, or six with seconds first, or @hourly and the like)", *req.Cron, err))
		}
	}
	if create && (req.Script == nil || strings.TrimSpace(*req.Script) == "") {
		problems = append(problems, "script: required")
	}
	if req.Script != nil && len(*req.Script) > maxJobScript {
		problems = append(problems, fmt.Sprintf("script: %d bytes, at most %d", len(*req.Script), maxJobScript))
	}
	f := s.fleetIndex()
	f.mu.RLock()
	if req.EnvironmentIDs != nil {
		problems = append(problems, unknownIDs("environmentIds", "environment", *req.EnvironmentIDs, f.envs)...)
	}
	if req.EdgeGroupIDs != nil {
		problems = append(problems, unknownIDs("edgeGroupIds", "edge group", *req.EdgeGroupIDs, f.edgeGroups)...)
	}
	f.mu.RUnlock()
	if create && len(deref(req.EnvironmentIDs))+len(deref(req.EdgeGroupIDs)) == 0 {
		problems = append(problems, "environmentIds or edgeGroupIds: at least one target")
	}
	slices.Sort(problems)
	return problems
}

func deref(p *[]uint64) []uint64 {
	if p == nil {
		return nil
	}
	return *p
}

func (s *Server) handleCreateJob(w http.ResponseWriter, r *http.Request, ss session) {
	var req jobRequest
	if !decodeJSON(w, r, &req) {
		return
	}
	if refuse(w, s.validateJob(&req, true)) {
		return
	}
	script := []byte(*req.Script)
	j := &store.EdgeJob{
		Name: strings.TrimSpace(req.Name), Cron: *req.Cron, Hash: contentHash(script),
		EnvironmentIDs: sortedIDs(deref(req.EnvironmentIDs)), EdgeGroupIDs: sortedIDs(deref(req.EdgeGroupIDs)),
		Collect: req.Collect != nil && *req.Collect, Created: s.now().Unix(), By: ss.user,
	}
	j.Updated = j.Created
	if s.writeFailed(w, s.store.CreateJob(j, script), "create", "edge job", 0) {
		return
	}
	s.audit(r, ss.user, auditJobCreate, jobTarget(j.ID), fmt.Sprintf("name %q, cron %q, environments %v, edge groups %v, script %s", j.Name, j.Cron, j.EnvironmentIDs, j.EdgeGroupIDs, j.Hash[:12]))
	s.kickReconcile()
	writeJSON(w, http.StatusCreated, jobView{EdgeJob: *j, Script: *req.Script})
}

func (s *Server) handleUpdateJob(w http.ResponseWriter, r *http.Request, ss session) {
	var req jobRequest
	id, ok := idAndBody(w, r, "edge job", &req)
	if !ok {
		return
	}
	if refuse(w, s.validateJob(&req, false)) {
		return
	}
	var script []byte
	if req.Script != nil {
		script = []byte(*req.Script)
	}
	var changes []string
	j, err := s.store.UpdateJob(id, script, func(j *store.EdgeJob) error {
		bump := false
		if req.Name != "" && req.Name != j.Name {
			changes = append(changes, fmt.Sprintf("name %q", req.Name))
			j.Name = strings.TrimSpace(req.Name)
		}
		if req.Cron != nil && *req.Cron != j.Cron {
			changes = append(changes, fmt.Sprintf("cron %q -> %q", j.Cron, *req.Cron))
			j.Cron, bump = *req.Cron, true
		}
		if h := contentHash(script); script != nil && h != j.Hash {
			changes = append(changes, fmt.Sprintf("script %s -> %s", j.Hash[:12], h[:12]))
			j.Hash, bump = h, true
		}
		if req.Collect != nil && *req.Collect != j.Collect {
			changes = append(changes, fmt.Sprintf("collect logs %v", *req.Collect))
			j.Collect, bump = *req.Collect, true
		}
		if req.EnvironmentIDs != nil {
			j.EnvironmentIDs = sortedIDs(*req.EnvironmentIDs)
			changes = append(changes, fmt.Sprintf("environments %v", j.EnvironmentIDs))
		}
		if req.EdgeGroupIDs != nil {
			j.EdgeGroupIDs = sortedIDs(*req.EdgeGroupIDs)
			changes = append(changes, fmt.Sprintf("edge groups %v", j.EdgeGroupIDs))
		}
		if bump {
			j.Version++
		}
		j.Updated = s.now().Unix()
		return nil
	})
	if s.writeFailed(w, err, "update", "edge job", id) {
		return
	}
	s.audit(r, ss.user, auditJobUpdate, jobTarget(id), fmt.Sprintf("version %d: %s", j.Version, strings.Join(changes, ", ")))
	s.kickReconcile()
	writeJSON(w, http.StatusOK, j)
}

func (s *Server) handleDeleteJob(w http.ResponseWriter, r *http.Request, ss session) {
	id, ok := idFromPath(w, r, "edge job")
	if !ok {
		return
	}
	if s.writeFailed(w, s.store.DeleteJob(id), "delete", "edge job", id) {
		return
	}
	s.audit(r, ss.user, auditJobDelete, jobTarget(id), "stopped on every environment")
	s.kickReconcile()
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) handleListJobs(w http.ResponseWriter, _ *http.Request, _ session) {
	jobs, err := s.store.Jobs()
	if err != nil {
		s.log.Error("list edge jobs", "err", err)
		writeErr(w, http.StatusInternalServerError, "could not read the edge jobs")
		return
	}
	if jobs == nil {
		jobs = []store.EdgeJob{}
	}
	writeJSON(w, http.StatusOK, jobs)
}

func (s *Server) handleGetJob(w http.ResponseWriter, r *http.Request, _ session) {
	id, ok := idFromPath(w, r, "edge job")
	if !ok {
		return
	}
	j, err := s.store.Job(id)
	if s.writeFailed(w, err, "read", "edge job", id) {
		return
	}
	script, err := s.store.Blob(j.Hash)
	if s.writeFailed(w, err, "read", "edge job script", id) {
		return
	}
	writeJSON(w, http.StatusOK, jobView{EdgeJob: *j, Script: string(script)})
}

// handleJobResults serves GET /api/edge-jobs/{id}/results: the job's state
// on each environment and its runs there, newest first (?limit= per
// environment, default 10).
func (s *Server) handleJobResults(w http.ResponseWriter, r *http.Request, _ session) {
	id, ok := idFromPath(w, r, "edge job")
	if !ok {
		return
	}
	limit, _, err := pageParams(r, 10, store.RunsKept)
	if err != nil {
		writeErr(w, http.StatusBadRequest, "%v", err)
		return
	}
	targets, err := s.store.JobTargets(id)
	if s.writeFailed(w, err, "read", "edge job targets", id) {
		return
	}
	runs, err := s.store.JobRuns(id, limit)
	if s.writeFailed(w, err, "read", "edge job runs", id) {
		return
	}
	if targets == nil {
		targets = []store.JobTarget{}
	}
	if runs == nil {
		runs = []store.JobRun{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"jobId": id, "environments": targets, "runs": runs})
}

// handleJobCollect serves POST /api/edge-jobs/{id}/collect: every
// environment running the job sends the whole log of its latest run with
// its next exchange.
func (s *Server) handleJobCollect(w http.ResponseWriter, r *http.Request, ss session) {
	id, ok := idFromPath(w, r, "edge job")
	if !ok {
		return
	}
	if _, err := s.store.Job(id); s.writeFailed(w, err, "read", "edge job", id) {
		return
	}
	targets, err := s.store.JobTargets(id)
	if s.writeFailed(w, err, "read", "edge job targets", id) {
		return
	}
	var envs []uint64
	for _, t := range targets {
		if t.Remove {
			continue
		}
		c := &store.Command{Env: t.Env, Kind: kindJobCollect, Args: map[string]string{"job": strconv.FormatUint(id, 10)}, Created: s.now().Unix(), By: ss.user}
		if err := s.store.AddCommand(c); err != nil {
			s.writeFailed(w, err, "create", "collect command", id)
			return
		}
		envs = append(envs, t.Env)
	}
	s.audit(r, ss.user, auditJobCollect, jobTarget(id), fmt.Sprintf("environments %v", envs))
	writeJSON(w, http.StatusAccepted, map[string]any{"environmentIds": nonNil(envs)})
}
