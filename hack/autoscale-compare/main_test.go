package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const sample = "../../pkg/bench/trace/testdata/azure_conv_sample.csv"

func TestRunSmallTrace(t *testing.T) {
	dir := t.TempDir()
	csvPath, pngPath := filepath.Join(dir, "t.csv"), filepath.Join(dir, "t.png")
	var out bytes.Buffer
	if err := run([]string{"-trace", sample, "-rate-scale", "1", "-classes", "hpa,llm,fixed", "-csv", csvPath, "-png", pngPath}, &out); err != nil {
		t.Fatal(err)
	}
	for _, w := range []string{"40 of the trace's 40 requests", "   hpa ", "   llm ", " fixed "} {
		if !strings.Contains(out.String(), w) {
			t.Errorf("output does not contain %q:\n%s", w, out.String())
		}
	}
	b, err := os.ReadFile(csvPath)
	if err != nil || !strings.HasPrefix(string(b), "class,t_seconds,desired,") || !strings.Contains(string(b), "\nllm,") {
		t.Errorf("CSV %q, %v", b, err)
	}
	if b, err := os.ReadFile(pngPath); err != nil || !bytes.HasPrefix(b, []byte("\x89PNG")) {
		t.Errorf("PNG: %v", err)
	}
	out.Reset()
	if err := run([]string{"-trace", sample, "-calibrate", "-calibrate-scales", "1", "-calibrate-replicas", "1,2"}, &out); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "2 fixed: SLO met") {
		t.Errorf("calibration output:\n%s", out.String())
	}
}

func TestRunErrors(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"-trace", sample, "-classes", "kpa"}, `unknown autoscaler class "kpa"`},
		{[]string{"-trace", sample, "-sweep", "0.5,1", "-csv", "x.csv"}, "-sweep does not write -csv"},
		{[]string{"-trace", sample, "-sweep", "0.5,x"}, `-sweep: "x" is not a positive number`},
		{[]string{"-trace", sample, "-provisioning-delay", "1500ms"}, "provisioning delay 1.5s"},
		{[]string{"-trace", "no/such/file.csv"}, "opening the trace"},
		{[]string{"-trace", sample, "extra"}, "unexpected arguments"},
	} {
		err := run(c.args, &bytes.Buffer{})
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v: error %v, want %q", c.args, err, c.want)
		}
	}
}
