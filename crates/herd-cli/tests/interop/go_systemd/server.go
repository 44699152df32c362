// A Go server under herd through coreos/go-systemd's activation package (Debian's
// golang-github-coreos-go-systemd-dev): it finds herd's socket by its name (LISTEN_FDNAMES)
// and, on SIGTERM, stops accepting and finishes the requests it has.
package main

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/signal"
	"syscall"

	"github.com/coreos/go-systemd/activation"
)

func main() {
	named, err := activation.ListenersWithNames()
	if err != nil || len(named["http"]) == 0 {
		fmt.Fprintln(os.Stderr, "go_systemd/server.go: no socket named http for this process", err)
		os.Exit(1)
	}
	pid := os.Getpid()
	server := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Connection", "close")
		fmt.Fprintf(w, "go-systemd pid %d\n", pid)
	})}
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGTERM)
	done := make(chan struct{})
	go func() {
		<-stop
		server.Shutdown(context.Background())
		close(done)
	}()
	if err := server.Serve(named["http"][0]); err != http.ErrServerClosed {
		fmt.Fprintln(os.Stderr, "go_systemd/server.go:", err)
		os.Exit(1)
	}
	// Serve returns as soon as Shutdown closes the listener; Shutdown returns once the
	// requests in progress are answered.
	<-done
}
