package inferenceservice

import (
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
)

// PortFromCommandLine finds the port a model server listens on in its
// command line: the value of the last `--port N` or `--port=N` among the
// words of args (vLLM's flag; `sh -c "<cmd>"` is searched inside its string).
// ok is false when there is none or it is not a port number.
func PortFromCommandLine(args []string) (port int32, ok bool) {
	var words []string
	for _, a := range args {
		words = append(words, strings.Fields(a)...)
	}
	for i, w := range words {
		var v string
		switch {
		case w == "--port" && i+1 < len(words):
			v = words[i+1]
		case strings.HasPrefix(w, "--port="):
			v = strings.TrimPrefix(w, "--port=")
		default:
			continue
		}
		v = strings.Trim(v, `"'`)
		n, err := strconv.ParseInt(v, 10, 32)
		if err != nil || n < 1 || n > 65535 {
			continue
		}
		port, ok = int32(n), true
	}
	return port, ok
}

// ServerPort is the port the model server container listens on: --port from
// its command line (what the engine really binds), else its first declared
// container port, else DefaultPort.
func ServerPort(c *corev1.Container) int32 {
	if p, ok := PortFromCommandLine(append(append([]string{}, c.Command...), c.Args...)); ok {
		return p
	}
	if len(c.Ports) > 0 && c.Ports[0].ContainerPort > 0 {
		return c.Ports[0].ContainerPort
	}
	return DefaultPort
}
