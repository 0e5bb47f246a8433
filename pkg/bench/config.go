// Package bench is `spillway bench`: a load generator that takes hey's flags
// and prints hey's report (summary, latency histogram, percentiles, status
// codes, errors), plus the figures of LLM serving (time to first token,
// time per output token, output tokens per second, errors by type) for
// streaming and non-streaming OpenAI requests. It replays Azure-format
// request traces and draws a timeline of the load and of the cluster's
// replicas and nodes per pool. Every run is bounded in requests and time.
package bench

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/textproto"
	"net/url"
	"os"
	"strings"
	"time"
)

// Config is one benchmark run.
type Config struct {
	URL         string
	Requests    int           // -n
	Concurrency int           // -c
	QPS         float64       // -q, per worker
	Duration    time.Duration // -z
	Method      string        // -m
	Header      http.Header   // -H, -T, -A
	Body        []byte        // -d or -D
	Host        string        // -host
	Timeout     time.Duration // -t
	BasicAuth   string        // -a user:pass

	DisableCompression bool
	DisableKeepAlives  bool
	DisableRedirects   bool

	Output string // -o: "" (text) or json

	Trace      string  // Azure-format CSV to replay
	SpeedUp    float64 // trace time compression
	RateScale  float64 // trace requests per unit of time
	TraceLimit int     // first N requests of the (scaled) trace
	Model      string  // model of generated request bodies

	Plot        string        // PNG timeline
	Service     string        // InferenceService whose replicas are plotted
	Namespace   string        // its namespace
	Kubeconfig  string        // cluster to read while plotting
	KubeContext string        // kubeconfig context
	SampleEvery time.Duration // cluster sampling period

	MaxRequests int           // safety bound with -z
	MaxDuration time.Duration // safety bound without -z
	Progress    time.Duration // progress period (0: none)
}

type headerFlag struct{ h http.Header }

func (f *headerFlag) String() string { return "" }

func (f *headerFlag) Set(v string) error {
	k, val, ok := strings.Cut(v, ":")
	k = strings.TrimSpace(k)
	if !ok || k == "" || strings.ContainsAny(k, " \t") {
		return fmt.Errorf("want \"Name: value\", got %q", v)
	}
	f.h.Add(textproto.CanonicalMIMEHeaderKey(k), strings.TrimSpace(val))
	return nil
}

const usageHead = `Usage: spillway bench [options...] <url>

Sends HTTP load like hey and reports hey's figures, plus LLM figures (TTFT,
TPOT, output tokens/s, errors by type) for OpenAI streaming (SSE) and
non-streaming responses. Flags take one dash or two (-host or --host).

Options:
`

// Parse reads hey-style arguments. It returns flag.ErrHelp after writing the
// usage to out when asked for help.
func Parse(args []string, out io.Writer) (Config, error) {
	c := Config{Header: http.Header{}}
	fs := flag.NewFlagSet("spillway bench", flag.ContinueOnError)
	var usageBuf bytes.Buffer
	fs.SetOutput(&usageBuf)
	var (
		body, bodyFile, ctype, accept, output string
		timeoutSec                            int
	)
	hf := &headerFlag{h: c.Header}
	fs.IntVar(&c.Requests, "n", 200, "number of requests to run")
	fs.IntVar(&c.Concurrency, "c", 50, "number of workers sending requests concurrently; with -trace, the most requests in flight")
	fs.Float64Var(&c.QPS, "q", 0, "rate limit, in requests per second per worker (0: none)")
	fs.DurationVar(&c.Duration, "z", 0, "send requests for this long (e.g. 10s, 2m); -n is then ignored")
	fs.StringVar(&output, "o", "", "output: text (default) or json")
	fs.StringVar(&c.Method, "m", "GET", "HTTP method: GET, POST, PUT, DELETE, HEAD, OPTIONS, PATCH")
	fs.Var(hf, "H", "a request header \"Name: value\" (repeatable)")
	fs.IntVar(&timeoutSec, "t", 20, "timeout of each request in seconds (0: none, still bounded by -z/-max-duration)")
	fs.StringVar(&accept, "A", "", "Accept header")
	fs.StringVar(&body, "d", "", "request body")
	fs.StringVar(&bodyFile, "D", "", "file holding the request body")
	fs.StringVar(&ctype, "T", "text/html", "Content-Type header")
	fs.StringVar(&c.BasicAuth, "a", "", "basic authentication, username:password")
	fs.StringVar(&c.Host, "host", "", "the Host header")
	fs.BoolVar(&c.DisableCompression, "disable-compression", false, "disable compression")
	fs.BoolVar(&c.DisableKeepAlives, "disable-keepalive", false, "disable keep-alive: one TCP connection per request")
	fs.BoolVar(&c.DisableRedirects, "disable-redirects", false, "do not follow HTTP redirects")
	fs.StringVar(&c.Trace, "trace", "", "replay an Azure-format CSV trace (TIMESTAMP,ContextTokens,GeneratedTokens): send at its arrival times with its token lengths")
	fs.Float64Var(&c.SpeedUp, "speedup", 1, "with -trace: compress time by this factor (60: an hour in a minute)")
	fs.Float64Var(&c.RateScale, "rate-scale", 1, "with -trace: scale the request rate (0.5 keeps every other request, 2 sends each twice)")
	fs.IntVar(&c.TraceLimit, "trace-limit", 0, "with -trace: send at most this many requests (0: all)")
	fs.StringVar(&c.Model, "model", "", "with -trace and no -d: the model of the generated chat requests")
	fs.StringVar(&c.Plot, "plot", "", "write a PNG timeline of load, TTFT, replicas and nodes per node pool to this file")
	fs.StringVar(&c.Service, "service", "", "the InferenceService whose replicas -plot draws (default: from -host NAME-NAMESPACE.DOMAIN)")
	fs.StringVar(&c.Namespace, "namespace", "", "its namespace (default: from kubeconfig, else default)")
	fs.StringVar(&c.Kubeconfig, "kubeconfig", "", "kubeconfig of the cluster -plot reads (default: $KUBECONFIG, then ~/.kube/config)")
	fs.StringVar(&c.KubeContext, "context", "", "kubeconfig context")
	fs.DurationVar(&c.SampleEvery, "sample-every", 2*time.Second, "how often -plot reads the cluster")
	fs.IntVar(&c.MaxRequests, "max-requests", 10_000_000, "safety bound on the requests of a -z or -trace run")
	fs.DurationVar(&c.MaxDuration, "max-duration", time.Hour, "safety bound on the length of any run")
	fs.DurationVar(&c.Progress, "progress", time.Second, "how often progress is shown on stderr (0: never)")
	// hey's flags that spillway bench does not implement: declared so that
	// using one gets a message naming it rather than "not defined".
	var unsupported struct {
		proxy string
		h2    bool
		cpus  int
	}
	fs.StringVar(&unsupported.proxy, "x", "", "hey's HTTP proxy: not supported")
	fs.BoolVar(&unsupported.h2, "h2", false, "hey's HTTP/2: not supported")
	fs.IntVar(&unsupported.cpus, "cpus", 0, "hey's GOMAXPROCS setting: not supported")
	fs.Usage = func() {
		fmt.Fprint(&usageBuf, usageHead)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			_, _ = out.Write(usageBuf.Bytes())
			return c, flag.ErrHelp
		}
		return c, usageErr("%v", err)
	}
	switch fs.NArg() {
	case 0:
		return c, usageErr("the URL is missing: spillway bench [options...] <url>")
	case 1:
	default:
		return c, usageErr("one URL expected after the options, got %q (options go before the URL)", strings.Join(fs.Args(), " "))
	}
	c.URL = fs.Arg(0)
	u, err := url.Parse(c.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return c, usageErr("URL %q: want http://host[:port]/path", c.URL)
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	for _, f := range []string{"x", "h2", "cpus"} {
		if set[f] {
			return c, usageErr("hey's -%s is not supported by spillway bench", f)
		}
	}
	c.Method = strings.ToUpper(c.Method)
	switch c.Method {
	case "GET", "POST", "PUT", "DELETE", "HEAD", "OPTIONS", "PATCH":
	default:
		return c, usageErr("-m %q: not an HTTP method", c.Method)
	}
	switch output {
	case "", "text":
	case "json":
		c.Output = "json"
	case "csv":
		return c, usageErr("-o csv (hey's per-request CSV) is not supported: use -o json")
	default:
		return c, usageErr("-o %q: want text or json", output)
	}
	if c.Concurrency < 1 {
		return c, usageErr("-c %d: want at least 1", c.Concurrency)
	}
	if c.Duration < 0 || c.QPS < 0 || timeoutSec < 0 || c.MaxDuration <= 0 || c.MaxRequests < 1 || c.Progress < 0 {
		return c, usageErr("-z, -q, -t, -max-duration, -max-requests and -progress must not be negative")
	}
	if c.Duration == 0 && c.Trace == "" {
		if c.Requests < 1 {
			return c, usageErr("-n %d: want at least 1", c.Requests)
		}
		if c.Requests < c.Concurrency {
			return c, usageErr("-n %d cannot be less than -c %d", c.Requests, c.Concurrency)
		}
	}
	if c.Trace == "" {
		for _, f := range []string{"speedup", "rate-scale", "trace-limit", "model"} {
			if set[f] {
				return c, usageErr("-%s needs -trace", f)
			}
		}
	} else if c.QPS > 0 {
		return c, usageErr("-q cannot be combined with -trace (the trace sets the arrival times)")
	}
	if c.SampleEvery < 100*time.Millisecond {
		return c, usageErr("-sample-every %v: want at least 100ms", c.SampleEvery)
	}
	c.Timeout = time.Duration(timeoutSec) * time.Second
	if body != "" && bodyFile != "" {
		return c, usageErr("give the body with -d or -D, not both")
	}
	c.Body = []byte(body)
	if bodyFile != "" {
		if c.Body, err = os.ReadFile(bodyFile); err != nil {
			return c, usageErr("-D: %v", err)
		}
	}
	if c.Trace != "" && len(c.Body) > 0 {
		var m map[string]any
		if err := json.Unmarshal(c.Body, &m); err != nil {
			return c, usageErr("with -trace the body is a JSON template of an OpenAI request: %v", err)
		}
	}
	if c.Header.Get("Content-Type") == "" {
		c.Header.Set("Content-Type", ctype)
	}
	if accept != "" {
		c.Header.Set("Accept", accept)
	}
	if c.BasicAuth != "" && !strings.Contains(c.BasicAuth, ":") {
		return c, usageErr("-a: want username:password")
	}
	if c.Host == "" {
		c.Host = c.Header.Get("Host")
	}
	c.Header.Del("Host")
	return c, nil
}

// UsageError is a mistake on the command line.
type UsageError struct{ msg string }

func (e *UsageError) Error() string { return e.msg + "\nSee 'spillway bench --help'" }

func usageErr(format string, args ...any) error {
	return &UsageError{msg: fmt.Sprintf(format, args...)}
}

func openFile(path string) (io.ReadCloser, error) { return os.Open(path) }
