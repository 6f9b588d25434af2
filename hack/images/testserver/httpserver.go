package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"time"
)

// patternPeriod is the period of the /bytes pattern: byte i is i mod 251.
// A prime period makes a shifted, dropped or repeated chunk of any power-of-two
// size show up as a mismatch.
const patternPeriod = 251

// patternBlock holds a whole number of periods, so writing it back to back
// continues the pattern without a seam.
var patternBlock = func() []byte {
	block := make([]byte, patternPeriod*256)
	for i := range block {
		block[i] = byte(i % patternPeriod)
	}
	return block
}()

// spoolInMemory is how much of a POST body is echoed from memory; larger
// bodies go through a temporary file so memory stays bounded.
const spoolInMemory = 4 << 20

func newHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /health", handleHealth)
	mux.HandleFunc("GET /bytes", handleBytes)
	mux.HandleFunc("GET /{$}", handleInfo)
	mux.HandleFunc("POST /", handleEcho)
	return mux
}

func handleHealth(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	io.WriteString(w, "ok")
}

// handleBytes answers GET /bytes?n=N with N bytes of the pattern i mod 251.
func handleBytes(w http.ResponseWriter, r *http.Request) {
	n, err := strconv.ParseInt(r.URL.Query().Get("n"), 10, 64)
	if err != nil || n < 0 {
		http.Error(w, "n must be a non-negative integer", http.StatusBadRequest)
		return
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Content-Length", strconv.FormatInt(n, 10))
	for n > 0 {
		chunk := patternBlock
		if int64(len(chunk)) > n {
			chunk = chunk[:n]
		}
		if _, err := w.Write(chunk); err != nil {
			return // the client went away
		}
		n -= int64(len(chunk))
	}
}

type info struct {
	Hostname  string `json:"hostname"`
	Pod       string `json:"pod"`
	Namespace string `json:"namespace"`
	Remote    string `json:"remote"`
	Version   string `json:"version"`
}

// handleInfo tells a client which replica answered (behind a Service).
func handleInfo(w http.ResponseWriter, r *http.Request) {
	hostname, _ := os.Hostname()
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(info{
		Hostname:  hostname,
		Pod:       os.Getenv("POD_NAME"),
		Namespace: os.Getenv("POD_NAMESPACE"),
		Remote:    r.RemoteAddr,
		Version:   Version,
	})
}

// handleEcho sends any POST body back. The body is read completely before the
// answer starts: most clients send the whole request before reading, and
// answering while they still send would deadlock once both socket buffers fill.
func handleEcho(w http.ResponseWriter, r *http.Request) {
	body, size, err := spool(r.Body)
	if err != nil {
		http.Error(w, "reading the body: "+err.Error(), http.StatusBadRequest)
		return
	}
	defer body.Close()
	contentType := r.Header.Get("Content-Type")
	if contentType == "" {
		contentType = "application/octet-stream"
	}
	w.Header().Set("Content-Type", contentType)
	w.Header().Set("Content-Length", strconv.FormatInt(size, 10))
	io.Copy(w, body)
}

// spool reads r to its end and returns a reader over the same bytes, kept in
// memory up to spoolInMemory and in a removed temporary file beyond that.
func spool(r io.Reader) (io.ReadCloser, int64, error) {
	head, err := io.ReadAll(io.LimitReader(r, spoolInMemory+1))
	if err != nil {
		return nil, 0, err
	}
	if len(head) <= spoolInMemory {
		return io.NopCloser(bytes.NewReader(head)), int64(len(head)), nil
	}
	file, err := os.CreateTemp("", "testserver-echo-")
	if err != nil {
		return nil, 0, err
	}
	os.Remove(file.Name()) // the open descriptor keeps the data until Close
	size, err := io.Copy(file, io.MultiReader(bytes.NewReader(head), r))
	if err == nil {
		_, err = file.Seek(0, io.SeekStart)
	}
	if err != nil {
		file.Close()
		return nil, 0, err
	}
	return file, size, nil
}

func serveHTTP(ctx context.Context, ln net.Listener) error {
	srv := &http.Server{Handler: newHandler(), ReadHeaderTimeout: 30 * time.Second}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
	}
	graceCtx, cancel := context.WithTimeout(context.Background(), shutdownGrace)
	defer cancel()
	if err := srv.Shutdown(graceCtx); err != nil {
		srv.Close() // requests still running after the grace period are cut
	}
	if err := <-done; !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
