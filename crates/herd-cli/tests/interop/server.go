// A Go server under herd: the socket arrives at fd 3 (LISTEN_FDS).
package main

import (
	"fmt"
	"net"
	"net/http"
	"os"
	"strconv"
)

func main() {
	if os.Getenv("LISTEN_PID") != strconv.Itoa(os.Getpid()) {
		fmt.Fprintln(os.Stderr, "server.go: no socket for this process")
		os.Exit(1)
	}
	listener, err := net.FileListener(os.NewFile(3, "http"))
	if err != nil {
		fmt.Fprintln(os.Stderr, "server.go:", err)
		os.Exit(1)
	}
	pid := os.Getpid()
	http.Serve(listener, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Connection", "close")
		fmt.Fprintf(w, "go pid %d\n", pid)
	}))
}
