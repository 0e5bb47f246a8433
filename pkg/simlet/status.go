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
	// BackOffUntil is when the next run may start after LastExit or a
	// start error (crash-loop back-off; zero: at once).
	BackOffUntil time.Time
	PodIP        string
	HostIP       string
}

// Exit describes a run that ended.
type Exit struct {
	At       time.Time
	Started  time.Time
	ExitCode int32
	Reason   string
	Message  string
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
	// A pod whose container exited and will be restarted stays Running with
	// its IP, as with a kubelet (restartPolicy Always).
	if running || st.LastExit != nil {
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
		backingOff := st.LastExit != nil && now.Before(st.BackOffUntil)
		switch {
		case running:
			started := metav1.NewTime(st.Started)
			cs.State.Running = &corev1.ContainerStateRunning{StartedAt: started}
			cs.Started = &running
			cs.ContainerID = "simlet://" + string(pod.UID) + "/" + c.Name + "/" + itoa(int(st.Restarts))
		case st.StartErr != "":
			cs.State.Waiting = &corev1.ContainerStateWaiting{Reason: "RunContainerError", Message: st.StartErr}
		case backingOff:
			cs.State.Waiting = &corev1.ContainerStateWaiting{Reason: "CrashLoopBackOff",
				Message: "back-off " + st.BackOffUntil.Sub(st.LastExit.At).String() + " restarting failed container=" + c.Name +
					" pod=" + pod.Name + "_" + pod.Namespace + "(" + string(pod.UID) + ")"}
		case st.LastExit != nil:
			cs.State.Terminated = terminated(st.LastExit)
		default:
			cs.State.Waiting = &corev1.ContainerStateWaiting{Reason: "ContainerCreating"}
		}
		if st.LastExit != nil && i == 0 && cs.State.Terminated == nil {
			cs.LastTerminationState.Terminated = terminated(st.LastExit)
		}
		s.ContainerStatuses = append(s.ContainerStatuses, cs)
	}
	return s
}

func terminated(e *Exit) *corev1.ContainerStateTerminated {
	return &corev1.ContainerStateTerminated{
		ExitCode: e.ExitCode, Reason: e.Reason, Message: e.Message,
		StartedAt: metav1.NewTime(e.Started), FinishedAt: metav1.NewTime(e.At),
	}
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
