package simlet

import (
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// RunState is what the simlet knows of a pod's run, the input of PodStatus.
type RunState struct {
	// Started is when the current run started (zero: not started).
	Started time.Time
	// Ready: the pod serves.
	Ready bool
	// StartErr is why the pod could not start (e.g. port in use).
	StartErr string
	// Restarts counts runs that ended and were started again.
	Restarts int32
	// LastExit is the end of the previous run, if any.
	LastExit *Exit
	PodIP    string
	HostIP   string
}

// Exit describes a run that ended.
type Exit struct {
	At       time.Time
	Started  time.Time
	ExitCode int32
	Reason   string
}

// PodStatus returns the status a kubelet would report for pod given its run
// state at now. Transition times are kept from old conditions whose status is
// unchanged, so an unchanged state yields an unchanged status.
func PodStatus(pod *corev1.Pod, st RunState, now time.Time) corev1.PodStatus {
	old := pod.Status
	mt := metav1.NewTime(now)
	s := corev1.PodStatus{
		Phase:    corev1.PodPending,
		HostIP:   st.HostIP,
		QOSClass: old.QOSClass,
	}
	if st.HostIP != "" {
		s.HostIPs = []corev1.HostIP{{IP: st.HostIP}}
	}
	if old.StartTime != nil {
		s.StartTime = old.StartTime
	} else {
		s.StartTime = &mt
	}
	running := !st.Started.IsZero()
	if running {
		s.Phase = corev1.PodRunning
		s.PodIP = st.PodIP
		s.PodIPs = []corev1.PodIP{{IP: st.PodIP}}
	}
	ready := running && st.Ready
	cond := func(t corev1.PodConditionType, ok bool, reason string) corev1.PodCondition {
		c := corev1.PodCondition{Type: t, Status: corev1.ConditionFalse, LastTransitionTime: mt, Reason: reason}
		if ok {
			c.Status, c.Reason = corev1.ConditionTrue, ""
		}
		for _, o := range old.Conditions {
			if o.Type == t && o.Status == c.Status {
				c.LastTransitionTime = o.LastTransitionTime
			}
		}
		return c
	}
	notReady := "ContainersNotReady"
	s.Conditions = []corev1.PodCondition{
		cond(corev1.PodReadyToStartContainers, running, ""),
		cond(corev1.PodInitialized, true, ""),
		cond(corev1.PodReady, ready, notReady),
		cond(corev1.ContainersReady, ready, notReady),
		cond(corev1.PodScheduled, true, ""),
	}
	for i, c := range pod.Spec.Containers {
		cs := corev1.ContainerStatus{
			Name: c.Name, Image: c.Image, ImageID: "simlet://" + c.Image,
			RestartCount: st.Restarts, Ready: ready,
		}
		switch {
		case running:
			started := metav1.NewTime(st.Started)
			cs.State.Running = &corev1.ContainerStateRunning{StartedAt: started}
			cs.Started = &running
			cs.ContainerID = "simlet://" + string(pod.UID) + "/" + c.Name + "/" + itoa(int(st.Restarts))
		case st.StartErr != "":
			cs.State.Waiting = &corev1.ContainerStateWaiting{Reason: "RunContainerError", Message: st.StartErr}
		default:
			cs.State.Waiting = &corev1.ContainerStateWaiting{Reason: "ContainerCreating"}
		}
		if st.LastExit != nil && i == 0 {
			cs.LastTerminationState.Terminated = &corev1.ContainerStateTerminated{
				ExitCode: st.LastExit.ExitCode, Reason: st.LastExit.Reason,
				StartedAt: metav1.NewTime(st.LastExit.Started), FinishedAt: metav1.NewTime(st.LastExit.At),
			}
		}
		s.ContainerStatuses = append(s.ContainerStatuses, cs)
	}
	return s
}

func itoa(n int) string {
	if n == 0 {
		return "0"
	}
	var b []byte
	for ; n > 0; n /= 10 {
		b = append([]byte{byte('0' + n%10)}, b...)
	}
	return string(b)
}
