package edgeagent

import (
	"context"
	"fmt"

	"outpost/edgeagent/stacks"
	"outpost/kube"
	"outpost/protocol"
)

// kubeStacks runs the edge stacks of an agent in a Kubernetes cluster:
// manifests, applied by kube.Stacks. A compose stack is refused with what
// to do, and reported as an error like any failed deploy.
type kubeStacks struct{ s *kube.Stacks }

func (k kubeStacks) Deploy(ctx context.Context, spec stacks.Spec) error {
	if spec.Type != protocol.StackKubernetes {
		return fmt.Errorf("%w: a compose stack cannot run on this device, which is a Kubernetes cluster without Docker: target it at Docker environments, or make a stack of type kubernetes", stacks.ErrInvalid)
	}
	return k.s.Deploy(ctx, kube.StackSpec{Name: spec.Project, Version: spec.Version, Manifests: spec.Manifests, Namespace: spec.Namespace})
}

func (k kubeStacks) Remove(ctx context.Context, project string) error {
	return k.s.Remove(ctx, project)
}

func (k kubeStacks) Status(ctx context.Context, project string) (stacks.State, error) {
	st, err := k.s.Status(ctx, project)
	if err != nil {
		return stacks.State{}, err
	}
	switch st.Phase {
	case kube.StackRunning:
		return stacks.State{Phase: stacks.Running}, nil
	case kube.StackFailed:
		return stacks.State{Phase: stacks.Failed, Message: st.Message}, nil
	case kube.StackMissing:
		// After a deploy that returned, the inventory is there: its loss
		// is a failure to mend by deploying again, not "no container".
		return stacks.State{Phase: stacks.Failed, Message: st.Message + ": deploy the stack again"}, nil
	}
	return stacks.State{Phase: stacks.Deploying, Message: st.Message}, nil
}
