package gateway

import (
	"log"
	"strings"

	"github.com/go-logr/logr"
)

// stdLogger bridges net/http's error log to the structured logger.
func stdLogger(l logr.Logger) *log.Logger {
	return log.New(logWriter{l}, "", 0)
}

type logWriter struct{ l logr.Logger }

func (w logWriter) Write(p []byte) (int, error) {
	w.l.V(1).Info(strings.TrimSpace(string(p)))
	return len(p), nil
}
