package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

func pattern(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i % patternPeriod)
	}
	return b
}

func get(t *testing.T, srv *httptest.Server, path string) (*http.Response, []byte) {
	t.Helper()
	resp, err := srv.Client().Get(srv.URL + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, body
}

func TestHealth(t *testing.T) {
	srv := httptest.NewServer(newHandler())
	defer srv.Close()
	resp, body := get(t, srv, "/health")
	if resp.StatusCode != http.StatusOK || string(body) != "ok" {
		t.Fatalf("GET /health = %d %q", resp.StatusCode, body)
	}
}

func TestBytes(t *testing.T) {
	srv := httptest.NewServer(newHandler())
	defer srv.Close()
	for _, n := range []int{0, 1, 250, 251, 252, len(patternBlock) + 7, 3 << 20} {
		resp, body := get(t, srv, fmt.Sprintf("/bytes?n=%d", n))
		if resp.StatusCode != http.StatusOK || !bytes.Equal(body, pattern(n)) {
			t.Fatalf("GET /bytes?n=%d: status %d, %d bytes, pattern ok=%v",
				n, resp.StatusCode, len(body), bytes.Equal(body, pattern(n)))
		}
	}
	for _, bad := range []string{"", "-1", "x"} {
		if resp, _ := get(t, srv, "/bytes?n="+bad); resp.StatusCode != http.StatusBadRequest {
			t.Fatalf("GET /bytes?n=%s = %d, want 400", bad, resp.StatusCode)
		}
	}
}

func TestEchoPost(t *testing.T) {
	srv := httptest.NewServer(newHandler())
	defer srv.Close()
	// One body kept in memory, one spooled through a temporary file.
	for _, size := range []int{0, 1000, spoolInMemory + 12345} {
		sent := pattern(size)
		resp, err := srv.Client().Post(srv.URL+"/echo", "text/x-test", bytes.NewReader(sent))
		if err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, sent) || resp.Header.Get("Content-Type") != "text/x-test" {
			t.Fatalf("POST %d bytes: got %d bytes, content type %q", size, len(got), resp.Header.Get("Content-Type"))
		}
	}
}

func TestInfo(t *testing.T) {
	t.Setenv("POD_NAME", "web-0")
	srv := httptest.NewServer(newHandler())
	defer srv.Close()
	_, body := get(t, srv, "/")
	var got info
	if err := json.Unmarshal(body, &got); err != nil {
		t.Fatalf("GET / is not JSON: %v: %s", err, body)
	}
	if got.Pod != "web-0" || got.Hostname == "" || got.Version != Version {
		t.Fatalf("GET / = %+v", got)
	}
}

// startServers runs the given mode on free ports and returns the announced
// addresses by kind, plus a stop function that fails the test if the servers
// do not stop promptly.
func startServers(t *testing.T, args ...string) (map[string]string, func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	outR, outW := io.Pipe()
	exited := make(chan int, 1)
	go func() {
		exited <- run(ctx, args, outW, io.Discard)
		outW.Close()
	}()
	addrs := map[string]string{}
	want := len(args[1:]) / 2
	buf := make([]byte, 4096)
	var text strings.Builder
	for strings.Count(text.String(), "\n") < want {
		n, err := outR.Read(buf)
		if err != nil {
			t.Fatalf("servers exited early: %q", text.String())
		}
		text.Write(buf[:n])
	}
	go io.Copy(io.Discard, outR)
	for _, line := range strings.Split(strings.TrimSpace(text.String()), "\n") {
		var kind, addr string
		if _, err := fmt.Sscanf(line, "testserver: %s listening on %s", &kind, &addr); err != nil {
			t.Fatalf("unexpected announcement %q", line)
		}
		addrs[kind] = addr
	}
	stop := func() {
		cancel()
		select {
		case code := <-exited:
			if code != 0 {
				t.Fatalf("exit code %d after stop", code)
			}
		case <-time.After(3 * time.Second):
			t.Fatal("servers did not stop within 3s")
		}
	}
	return addrs, stop
}

func TestEchoServerHalfCloseAndConcurrency(t *testing.T) {
	addrs, stop := startServers(t, "echo", "--port", "0")
	defer stop()
	var wg sync.WaitGroup
	errs := make(chan error, 32)
	for i := 0; i < 32; i++ {
		wg.Add(1)
		go func(size int) {
			defer wg.Done()
			errs <- echoOnce(addrs["echo"], pattern(size))
		}(1 + i*(64<<10))
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
}

// echoOnce sends payload while reading concurrently, half-closes, and expects
// exactly payload back followed by the server's FIN.
func echoOnce(addr string, payload []byte) error {
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		return err
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(20 * time.Second))
	sendErr := make(chan error, 1)
	go func() {
		_, err := conn.Write(payload)
		if err == nil {
			err = conn.(*net.TCPConn).CloseWrite()
		}
		sendErr <- err
	}()
	got, err := io.ReadAll(conn)
	if err != nil {
		return err
	}
	if err := <-sendErr; err != nil {
		return err
	}
	if !bytes.Equal(got, payload) {
		return fmt.Errorf("sent %d bytes, got %d back (equal=%v)", len(payload), len(got), bytes.Equal(got, payload))
	}
	return nil
}

func TestBothStopsPromptlyWithOpenConnections(t *testing.T) {
	addrs, stop := startServers(t, "both", "--http-port", "0", "--echo-port", "0")
	idle, err := net.Dial("tcp", addrs["echo"])
	if err != nil {
		t.Fatal(err)
	}
	defer idle.Close()
	resp, err := http.Get("http://" + addrs["http"] + "/health")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	stop() // fails the test unless both servers return within 3s
}

func TestUsageErrors(t *testing.T) {
	for _, args := range [][]string{{}, {"nope"}, {"http", "--bogus"}, {"echo", "extra"}} {
		if code := run(context.Background(), args, io.Discard, io.Discard); code != 2 {
			t.Fatalf("run(%q) = %d, want 2", args, code)
		}
	}
}

func TestPortTaken(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	port := fmt.Sprint(ln.Addr().(*net.TCPAddr).Port)
	var stderr bytes.Buffer
	code := run(context.Background(), []string{"http", "--host", "127.0.0.1", "--port", port}, io.Discard, &stderr)
	if code != 1 || !strings.Contains(stderr.String(), "address already in use") {
		t.Fatalf("run on a taken port = %d, %q", code, stderr.String())
	}
}
