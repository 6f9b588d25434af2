// Command testserver is the small network server behind the image
// kubefixtures.local/testserver: an HTTP server and a TCP echo server that
// tests use to check Services, DNS, port-forwards and large transfers.
//
//	testserver http [--port 8080] [--host ADDR]
//	testserver echo [--port 7000] [--host ADDR]
//	testserver both [--http-port 8080] [--echo-port 7000] [--host ADDR]
//
// Port 0 picks a free port; every server prints one line
// "testserver: <kind> listening on <addr>" once it accepts connections, so
// callers can learn the port. SIGTERM or SIGINT stops it within about a second.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"strconv"
	"sync"
	"syscall"
	"time"
)

// Version is reported by GET / and --version.
const Version = "0.1"

// shutdownGrace bounds how long in-flight HTTP requests may finish after a
// stop signal: Kubernetes waits terminationGracePeriodSeconds, tests do not.
const shutdownGrace = time.Second

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Stdout, os.Stderr))
}

const usage = `usage:
  testserver http [--port 8080] [--host ADDR]
  testserver echo [--port 7000] [--host ADDR]
  testserver both [--http-port 8080] [--echo-port 7000] [--host ADDR]
  testserver --version`

// server is one listener plus the loop that serves it until ctx ends.
type server struct {
	kind  string
	addr  string
	serve func(ctx context.Context, ln net.Listener) error
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprintln(stderr, usage)
		return 2
	}
	if args[0] == "--version" || args[0] == "-version" {
		fmt.Fprintln(stdout, "testserver", Version)
		return 0
	}
	servers, err := parseServers(args[0], args[1:], stderr)
	if err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintf(stderr, "testserver: %v\n%s\n", err, usage)
		}
		return 2
	}
	if err := serveAll(ctx, servers, stdout); err != nil {
		fmt.Fprintf(stderr, "testserver: %v\n", err)
		return 1
	}
	return 0
}

func parseServers(mode string, args []string, stderr io.Writer) ([]server, error) {
	flags := flag.NewFlagSet(mode, flag.ContinueOnError)
	flags.SetOutput(stderr)
	host := flags.String("host", "", "address to listen on (default: all addresses)")
	var httpPort, echoPort *int
	switch mode {
	case "http":
		httpPort = flags.Int("port", 8080, "HTTP port (0 picks a free one)")
	case "echo":
		echoPort = flags.Int("port", 7000, "TCP echo port (0 picks a free one)")
	case "both":
		httpPort = flags.Int("http-port", 8080, "HTTP port (0 picks a free one)")
		echoPort = flags.Int("echo-port", 7000, "TCP echo port (0 picks a free one)")
	default:
		return nil, fmt.Errorf("unknown mode %q", mode)
	}
	if err := flags.Parse(args); err != nil {
		return nil, err
	}
	if flags.NArg() > 0 {
		return nil, fmt.Errorf("unexpected argument %q", flags.Arg(0))
	}
	var servers []server
	if httpPort != nil {
		servers = append(servers, server{"http", joinHostPort(*host, *httpPort), serveHTTP})
	}
	if echoPort != nil {
		servers = append(servers, server{"echo", joinHostPort(*host, *echoPort), serveEcho})
	}
	return servers, nil
}

func joinHostPort(host string, port int) string {
	return net.JoinHostPort(host, strconv.Itoa(port))
}

// serveAll listens on every address first (so a taken port fails before
// anything is announced), then serves until ctx ends or one server fails.
func serveAll(ctx context.Context, servers []server, stdout io.Writer) error {
	listeners := make([]net.Listener, 0, len(servers))
	defer func() {
		for _, ln := range listeners {
			ln.Close()
		}
	}()
	for _, s := range servers {
		ln, err := net.Listen("tcp", s.addr)
		if err != nil {
			return fmt.Errorf("%s: %w", s.kind, err)
		}
		listeners = append(listeners, ln)
	}

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errs := make(chan error, len(servers))
	var wg sync.WaitGroup
	for i, s := range servers {
		wg.Add(1)
		go func(s server, ln net.Listener) {
			defer wg.Done()
			err := s.serve(ctx, ln)
			if err != nil {
				err = fmt.Errorf("%s: %w", s.kind, err)
			}
			errs <- err
			cancel() // one server failing stops the others
		}(s, listeners[i])
		fmt.Fprintf(stdout, "testserver: %s listening on %s\n", s.kind, listeners[i].Addr())
	}
	wg.Wait()
	close(errs)
	var first error
	for err := range errs {
		if err != nil && first == nil {
			first = err
		}
	}
	return first
}
