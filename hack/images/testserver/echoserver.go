package main

import (
	"context"
	"errors"
	"io"
	"net"
	"sync"
)

// serveEcho runs a TCP echo server on ln until ctx ends. Every connection gets
// its own goroutine; each echoes until the client half-closes (EOF), then
// half-closes its own side so the client reads everything before the FIN.
func serveEcho(ctx context.Context, ln net.Listener) error {
	conns := newConnSet()
	stopped := make(chan struct{})
	go func() {
		select {
		case <-ctx.Done():
		case <-stopped:
		}
		ln.Close()
		conns.closeAll() // a stop signal must not wait for idle clients
	}()
	defer close(stopped)

	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		conn, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			var netErr net.Error
			if errors.As(err, &netErr) && netErr.Timeout() {
				continue
			}
			return err
		}
		if !conns.add(conn) {
			conn.Close() // accepted while stopping
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer conns.remove(conn)
			echo(conn)
		}()
	}
}

// halfCloser is what *net.TCPConn (and *net.UnixConn) offer for half-close.
type halfCloser interface {
	CloseWrite() error
}

func echo(conn net.Conn) {
	defer conn.Close()
	// io.Copy reads until EOF, which is the client's half-close (or close).
	if _, err := io.Copy(conn, conn); err != nil {
		return
	}
	if hc, ok := conn.(halfCloser); ok {
		hc.CloseWrite()
	}
}

// connSet tracks open connections so a stop can close them all at once.
type connSet struct {
	mu      sync.Mutex
	conns   map[net.Conn]struct{}
	stopped bool
}

func newConnSet() *connSet {
	return &connSet{conns: make(map[net.Conn]struct{})}
}

func (s *connSet) add(c net.Conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopped {
		return false
	}
	s.conns[c] = struct{}{}
	return true
}

func (s *connSet) remove(c net.Conn) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.conns, c)
}

func (s *connSet) closeAll() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stopped = true
	for c := range s.conns {
		c.Close()
	}
}
