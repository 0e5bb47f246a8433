// Command etcd is the etcd server, built from the etcd v3.6 server module so
// the local cluster and the integration tests need nothing but the Go module
// proxy. It is kept in its own module because etcd's server pins dependency
// versions that differ from those of Kubernetes v1.37.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
