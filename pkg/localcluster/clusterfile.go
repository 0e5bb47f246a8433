package localcluster

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"

	"k8s.io/apimachinery/pkg/util/validation"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"

	spillwayv1alpha1 "github.com/spillway-io/spillway/apis/spillway/v1alpha1"
)

// Annotations of NodePools in a cluster file.
const (
	// AnnotationStaticNodes is how many nodes the node simulator registers for
	// a Static pool.
	AnnotationStaticNodes = "spillway.io/static-nodes"
	// AnnotationDisplayName keeps a pool's original (not DNS-valid) name,
	// e.g. GPU-V100-Edge for the object gpu-v100-edge.
	AnnotationDisplayName = "spillway.io/display-name"
)

// ClusterFile is the parsed content of a cluster file.
type ClusterFile struct {
	Pools []spillwayv1alpha1.NodePool
}

// StaticNodes returns the number of nodes to register for pool (0 for an
// elastic pool).
func StaticNodes(pool *spillwayv1alpha1.NodePool) int {
	if pool.Spec.Type != spillwayv1alpha1.NodePoolStatic {
		return 0
	}
	n, _ := strconv.Atoi(pool.Annotations[AnnotationStaticNodes])
	return n
}

// ReadClusterFile reads and parses a cluster file.
func ReadClusterFile(path string) (*ClusterFile, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading cluster file: %w", err)
	}
	cf, err := ParseClusterFile(data)
	if err != nil {
		return nil, fmt.Errorf("cluster file %s: %w", path, err)
	}
	return cf, nil
}

// ParseClusterFile parses YAML documents, each a spillway.io/v1alpha1 NodePool.
func ParseClusterFile(data []byte) (*ClusterFile, error) {
	r := utilyaml.NewYAMLReader(bufioReader(data))
	cf := &ClusterFile{}
	seen := map[string]bool{}
	for i := 1; ; i++ {
		doc, err := r.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("document %d: %w", i, err)
		}
		if len(bytes.TrimSpace(doc)) == 0 || isOnlyComments(doc) {
			continue
		}
		var p spillwayv1alpha1.NodePool
		if err := yaml.UnmarshalStrict(doc, &p); err != nil {
			return nil, fmt.Errorf("document %d: %w", i, err)
		}
		if p.APIVersion != spillwayv1alpha1.GroupVersion.String() || p.Kind != "NodePool" {
			return nil, fmt.Errorf("document %d: want apiVersion %s kind NodePool, got %q %q", i, spillwayv1alpha1.GroupVersion, p.APIVersion, p.Kind)
		}
		if errs := validation.IsDNS1123Subdomain(p.Name); len(errs) > 0 {
			return nil, fmt.Errorf("document %d: pool name %q: %v (put the original in the %s annotation)", i, p.Name, errs, AnnotationDisplayName)
		}
		if seen[p.Name] {
			return nil, fmt.Errorf("document %d: pool %q listed twice", i, p.Name)
		}
		seen[p.Name] = true
		switch p.Spec.Type {
		case spillwayv1alpha1.NodePoolStatic:
			if s, ok := p.Annotations[AnnotationStaticNodes]; ok {
				if n, err := strconv.Atoi(s); err != nil || n < 0 || n > 100 {
					return nil, fmt.Errorf("document %d: pool %q: %s must be a whole number 0..100, got %q", i, p.Name, AnnotationStaticNodes, s)
				}
			}
		case spillwayv1alpha1.NodePoolElastic:
			if p.Spec.Provider == nil || p.Spec.MaxSize == nil {
				return nil, fmt.Errorf("document %d: elastic pool %q needs spec.provider and spec.maxSize", i, p.Name)
			}
		default:
			return nil, fmt.Errorf("document %d: pool %q: spec.type must be Static or Elastic, got %q", i, p.Name, p.Spec.Type)
		}
		cf.Pools = append(cf.Pools, p)
	}
	if len(cf.Pools) == 0 {
		return nil, errors.New("no NodePool in the file")
	}
	return cf, nil
}

func isOnlyComments(doc []byte) bool {
	for _, l := range bytes.Split(doc, []byte("\n")) {
		l = bytes.TrimSpace(l)
		if len(l) > 0 && l[0] != '#' && !bytes.Equal(l, []byte("---")) {
			return false
		}
	}
	return true
}

func bufioReader(data []byte) *bufio.Reader { return bufio.NewReader(bytes.NewReader(data)) }
