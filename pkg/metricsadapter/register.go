package metricsadapter

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/util/retry"
	apiregv1 "k8s.io/kube-aggregator/pkg/apis/apiregistration/v1"
	aggregator "k8s.io/kube-aggregator/pkg/client/clientset_generated/clientset"
)

// Group is the API group the adapter serves.
const Group = "custom.metrics.k8s.io"

// Registration says where the aggregator finds the adapter.
type Registration struct {
	// Namespace and Service name the Service the APIServices point at.
	Namespace, Service string
	// Port is the adapter's secure port.
	Port int32
	// CABundle verifies the adapter's serving certificate (PEM).
	CABundle []byte
	// ExternalName, when set, makes the Service an ExternalName Service of
	// this host (e.g. "localhost" for an adapter on the loopback interface,
	// which Endpoints cannot hold). When empty the Service is not touched:
	// in a cluster the adapter's Deployment comes with its own Service.
	ExternalName string
}

// ServingDNSName is the name the aggregator verifies on the adapter's
// certificate: <service>.<namespace>.svc.
func (r Registration) ServingDNSName() string { return r.Service + "." + r.Namespace + ".svc" }

// APIServices are the APIService objects of custom.metrics.k8s.io v1beta2
// (preferred) and v1beta1 pointing at the adapter.
func (r Registration) APIServices() []*apiregv1.APIService {
	var out []*apiregv1.APIService
	for i, version := range []string{"v1beta2", "v1beta1"} {
		out = append(out, &apiregv1.APIService{
			ObjectMeta: metav1.ObjectMeta{Name: version + "." + Group},
			Spec: apiregv1.APIServiceSpec{
				Service:              &apiregv1.ServiceReference{Namespace: r.Namespace, Name: r.Service, Port: &r.Port},
				Group:                Group,
				Version:              version,
				CABundle:             r.CABundle,
				GroupPriorityMinimum: 100,
				VersionPriority:      int32(200 - 100*i),
			},
		})
	}
	return out
}

// ExternalNameService is the Service for Registration.ExternalName.
func (r Registration) ExternalNameService() *corev1.Service {
	return &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: r.Service, Namespace: r.Namespace},
		Spec:       corev1.ServiceSpec{Type: corev1.ServiceTypeExternalName, ExternalName: r.ExternalName},
	}
}

// Register creates or updates the APIServices (and, with ExternalName, the
// namespace and Service) so the aggregator proxies custom.metrics.k8s.io to
// the adapter.
func Register(ctx context.Context, cs kubernetes.Interface, ag aggregator.Interface, r Registration) error {
	if r.ExternalName != "" {
		ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: r.Namespace}}
		if _, err := cs.CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
			return fmt.Errorf("creating namespace %q: %w", r.Namespace, err)
		}
		want := r.ExternalNameService()
		got, err := cs.CoreV1().Services(r.Namespace).Get(ctx, r.Service, metav1.GetOptions{})
		switch {
		case apierrors.IsNotFound(err):
			if _, err := cs.CoreV1().Services(r.Namespace).Create(ctx, want, metav1.CreateOptions{}); err != nil {
				return fmt.Errorf("creating service %s/%s: %w", r.Namespace, r.Service, err)
			}
		case err != nil:
			return fmt.Errorf("getting service %s/%s: %w", r.Namespace, r.Service, err)
		case got.Spec.Type != want.Spec.Type || got.Spec.ExternalName != want.Spec.ExternalName:
			got = got.DeepCopy()
			got.Spec = want.Spec
			if _, err := cs.CoreV1().Services(r.Namespace).Update(ctx, got, metav1.UpdateOptions{}); err != nil {
				return fmt.Errorf("updating service %s/%s: %w", r.Namespace, r.Service, err)
			}
		}
	}
	for _, want := range r.APIServices() {
		// The aggregator writes the APIService's status concurrently: an
		// update may conflict, and is then retried on a fresh read.
		if err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
			return registerAPIService(ctx, ag, want)
		}); err != nil {
			return err
		}
	}
	return nil
}

// registerAPIService creates want, or updates the spec of the existing one.
func registerAPIService(ctx context.Context, ag aggregator.Interface, want *apiregv1.APIService) error {
	api := ag.ApiregistrationV1().APIServices()
	got, err := api.Get(ctx, want.Name, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		if _, err := api.Create(ctx, want, metav1.CreateOptions{}); err != nil {
			return fmt.Errorf("creating APIService %s: %w", want.Name, err)
		}
	case err != nil:
		return fmt.Errorf("getting APIService %s: %w", want.Name, err)
	default:
		got = got.DeepCopy()
		got.Spec = want.Spec
		if _, err := api.Update(ctx, got, metav1.UpdateOptions{}); err != nil {
			return fmt.Errorf("updating APIService %s: %w", want.Name, err)
		}
	}
	return nil
}

// Available tells whether the aggregator reports the preferred version's
// APIService Available, with its reason when not.
func Available(ctx context.Context, ag aggregator.Interface) (bool, string, error) {
	as, err := ag.ApiregistrationV1().APIServices().Get(ctx, "v1beta2."+Group, metav1.GetOptions{})
	if err != nil {
		return false, "", err
	}
	for _, c := range as.Status.Conditions {
		if c.Type == apiregv1.Available {
			return c.Status == apiregv1.ConditionTrue, c.Reason + ": " + c.Message, nil
		}
	}
	return false, "no Available condition yet", nil
}
