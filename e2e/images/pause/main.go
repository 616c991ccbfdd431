// The real node's sandbox ("pause") container: holds the pod's namespaces, reaps orphaned
// children (it is PID 1 when the pod shares its process namespace) and exits on SIGINT/SIGTERM.
// The same job as Kubernetes' build/pause/linux/pause.c, built here as a static Go binary so
// the image needs no registry.
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	signals := make(chan os.Signal, 4)
	signal.Notify(signals, syscall.SIGINT, syscall.SIGTERM, syscall.SIGCHLD)
	for sig := range signals {
		if sig != syscall.SIGCHLD {
			os.Exit(0)
		}
		for {
			var status syscall.WaitStatus
			pid, err := syscall.Wait4(-1, &status, syscall.WNOHANG, nil)
			if pid <= 0 || err != nil {
				break
			}
		}
	}
}
