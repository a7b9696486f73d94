package proxy

import (
	"bytes"
	"errors"
	"io"
	"net"
	"os"
	"runtime"
	"testing"
	"time"
)

// waitKinds are the two places a turnConn's reads can wait: every turnConn
// test runs with both.
var waitKinds = []struct {
	name    string
	inOrder bool
}{{"runtime-poller", false}, {"in-order", true}}

func eachWait(t *testing.T, test func(t *testing.T, inOrder bool)) {
	for _, k := range waitKinds {
		t.Run(k.name, func(t *testing.T) { test(t, k.inOrder) })
	}
}

// turnPair returns a turnConn dialed to a plain TCP connection on loopback,
// its reads waiting in readyOrder (inOrder, where supported) or in the
// runtime's poller.
func turnPair(t *testing.T, inOrder bool) (*turnConn, net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, _ := ln.Accept()
		accepted <- c
	}()
	plain, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	c := newTurnConnWaiting(plain, inOrder)
	peer := <-accepted
	if peer == nil {
		t.Fatal("accept failed")
	}
	tc, ok := c.(*turnConn)
	if !ok {
		if !turnConnSupported {
			t.Skip("turnConn is not used on this platform")
		}
		t.Fatalf("a TCP connection was not wrapped: %T", c)
	}
	if want := inOrder && runtime.GOOS == "linux"; (tc.inOrder != nil) != want {
		t.Fatalf("reads wait in order: %v, want %v", tc.inOrder != nil, want)
	} else if want && !tc.inOrder.sole {
		t.Fatal("the socket is still in the runtime's poller: writes wait there, and every arrival wakes two epoll instances")
	}
	t.Cleanup(func() { tc.Close(); peer.Close() })
	return tc, peer
}

// echo writes back what it reads from peer, until an error.
func echo(peer net.Conn, bufSize int) {
	buf := make([]byte, bufSize)
	for {
		n, err := peer.Read(buf)
		if err != nil {
			return
		}
		if _, err := peer.Write(buf[:n]); err != nil {
			return
		}
	}
}

func readN(t *testing.T, c net.Conn, n int) []byte {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	b := make([]byte, n)
	if _, err := io.ReadFull(c, b); err != nil {
		t.Fatalf("peer read: %v", err)
	}
	return b
}

// Turns of every size arrive whole and in order: small writes held back
// and sent at the next Read, several writes coalesced, writes over the
// hold limit sent at once behind what was held.
func TestTurnConnTurnsArriveInOrder(t *testing.T) {
	eachWait(t, func(t *testing.T, inOrder bool) {
		c, peer := turnPair(t, inOrder)
		go echo(peer, 1<<20)
		for _, sizes := range [][]int{{5}, {100, 200, 300}, {4096}, {maxHeldWrite}, {10, maxHeldWrite + 1}, {3 * maxHeldWrite}, {1, 1, 1}} {
			var want []byte
			for i, n := range sizes {
				msg := bytes.Repeat([]byte{byte('a' + i)}, n)
				want = append(want, msg...)
				if m, err := c.Write(msg); err != nil || m != n {
					t.Fatalf("sizes %v: Write = %d, %v", sizes, m, err)
				}
			}
			got := make([]byte, len(want))
			_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
			if _, err := io.ReadFull(c, got); err != nil {
				t.Fatalf("sizes %v: read the echo: %v", sizes, err)
			}
			if !bytes.Equal(got, want) {
				t.Fatalf("sizes %v: the echo differs from what was written", sizes)
			}
		}
	})
}

// A write the next Read would have sent still goes out when the
// connection closes instead (a response with Connection: close).
func TestTurnConnCloseSendsHeldBytes(t *testing.T) {
	closeSendsHeld(t, func(*turnConn) {})
}

// Bytes Write accepted go out under the deadline in force when they were
// written. tls.Conn.Close writes its close_notify and then sets a write
// deadline of now; the response held before it must still reach the peer
// (every Connection: close answer over TLS depends on it).
func TestTurnConnDeadlineMovedAfterAWriteStillSends(t *testing.T) {
	closeSendsHeld(t, func(c *turnConn) { _ = c.SetWriteDeadline(time.Now()) })
}

// closeSendsHeld writes a response, runs beforeClose, closes, and checks
// that the peer got the response whole, in both wait modes.
func closeSendsHeld(t *testing.T, beforeClose func(*turnConn)) {
	const response = "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n"
	eachWait(t, func(t *testing.T, inOrder bool) {
		c, peer := turnPair(t, inOrder)
		if _, err := c.Write([]byte(response)); err != nil {
			t.Fatal(err)
		}
		beforeClose(c)
		c.Close()
		_ = peer.SetReadDeadline(time.Now().Add(5 * time.Second))
		got, err := io.ReadAll(peer)
		if err != nil {
			t.Fatal(err)
		}
		if string(got) != response {
			t.Fatalf("peer got %q, want the response written before the close", got)
		}
	})
}

// A Read whose deadline has already passed still sends what was held: the
// peer sees what a plain connection's Write would have sent.
func TestTurnConnExpiredReadStillSends(t *testing.T) {
	eachWait(t, func(t *testing.T, inOrder bool) {
		c, peer := turnPair(t, inOrder)
		if _, err := c.Write([]byte("request")); err != nil {
			t.Fatal(err)
		}
		_ = c.SetReadDeadline(time.Now().Add(-time.Second))
		_, err := c.Read(make([]byte, 10))
		var ne net.Error
		if !errors.Is(err, os.ErrDeadlineExceeded) || !errors.As(err, &ne) || !ne.Timeout() {
			t.Fatalf("Read past its deadline = %v, want a timeout", err)
		}
		if got := readN(t, peer, 7); string(got) != "request" {
			t.Fatalf("peer got %q", got)
		}
	})
}

// Deadlines are armed lazily, but the caller's deadline is the one that
// counts: a later deadline replacing an earlier one is not cut short by
// it, an earlier one replacing a later one fires, and clearing it lets a
// slow answer through.
func TestTurnConnDeadlines(t *testing.T) {
	eachWait(t, func(t *testing.T, inOrder bool) {
		c, peer := turnPair(t, inOrder)
		buf := make([]byte, 16)

		// Earlier, then later: the read lasts until the later one.
		start := time.Now()
		_ = c.SetReadDeadline(start.Add(30 * time.Millisecond))
		_ = c.SetReadDeadline(start.Add(250 * time.Millisecond))
		_, err := c.Read(buf)
		if !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("Read = %v, want a timeout", err)
		}
		if el := time.Since(start); el < 250*time.Millisecond {
			t.Fatalf("the read timed out after %v, before the deadline asked for last (250ms)", el)
		}

		// Later, then earlier: the earlier one ends the read.
		start = time.Now()
		_ = c.SetReadDeadline(start.Add(time.Hour))
		_ = c.SetReadDeadline(start.Add(50 * time.Millisecond))
		done := make(chan error, 1)
		go func() { _, err := c.Read(buf); done <- err }()
		select {
		case err := <-done:
			if !errors.Is(err, os.ErrDeadlineExceeded) {
				t.Fatalf("Read = %v, want a timeout", err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("an earlier deadline set after a later one did not end the read")
		}

		// A deadline, then none: an answer after the old deadline is read.
		_ = c.SetReadDeadline(time.Now().Add(30 * time.Millisecond))
		_ = c.SetReadDeadline(time.Time{})
		go func() {
			time.Sleep(150 * time.Millisecond)
			_, _ = peer.Write([]byte("late"))
		}()
		n, err := c.Read(buf)
		if err != nil || string(buf[:n]) != "late" {
			t.Fatalf("Read with the deadline cleared = %q, %v", buf[:n], err)
		}

		// Write deadlines too: a peer that does not read blocks a large write
		// until the write deadline asked for last, not an earlier one.
		start = time.Now()
		_ = c.SetWriteDeadline(start.Add(30 * time.Millisecond))
		_ = c.SetWriteDeadline(start.Add(200 * time.Millisecond))
		_, err = c.Write(make([]byte, 64<<20))
		if !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("Write to a peer that does not read = %v, want a timeout", err)
		}
		if el := time.Since(start); el < 200*time.Millisecond {
			t.Fatalf("the write timed out after %v, before its deadline (200ms)", el)
		}
	})
}

// Full-duplex use: a write while another goroutine waits in Read goes out
// at once instead of waiting for that Read to end.
func TestTurnConnWriteDuringRead(t *testing.T) {
	eachWait(t, func(t *testing.T, inOrder bool) {
		c, peer := turnPair(t, inOrder)
		reading := make(chan struct{})
		done := make(chan error, 1)
		go func() {
			close(reading)
			_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
			_, err := c.Read(make([]byte, 8))
			done <- err
		}()
		<-reading
		time.Sleep(50 * time.Millisecond) // let the Read block
		if _, err := c.Write([]byte("ping")); err != nil {
			t.Fatal(err)
		}
		if got := readN(t, peer, 4); string(got) != "ping" {
			t.Fatalf("peer got %q", got)
		}
		_, _ = peer.Write([]byte("pong"))
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	})
}

// A peer that goes away ends the turn with EOF or an error, never a hang.
func TestTurnConnPeerGone(t *testing.T) {
	eachWait(t, func(t *testing.T, inOrder bool) {
		c, peer := turnPair(t, inOrder)
		peer.Close()
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		var err error
		for i := 0; i < 3 && err == nil; i++ {
			if _, err = c.Write([]byte("request")); err == nil {
				_, err = c.Read(make([]byte, 8))
			}
		}
		if err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("a turn with a closed peer ended with %v, want EOF or a reset", err)
		}
	})
}

// peerClosed tells an open connection, with or without bytes waiting,
// from one the peer closed, takes no bytes, and looks even when the
// connection's armed deadline passed while it idled.
func TestTurnConnPeerClosed(t *testing.T) {
	eachWait(t, func(t *testing.T, inOrder bool) {
		c, peer := turnPair(t, inOrder)
		if c.peerClosed() {
			t.Fatal("an open, quiet connection looked closed")
		}
		io.WriteString(peer, "ticket")
		time.Sleep(20 * time.Millisecond)
		if c.peerClosed() {
			t.Fatal("an open connection with bytes waiting looked closed")
		}
		_ = c.SetReadDeadline(time.Now().Add(10 * time.Millisecond))
		time.Sleep(30 * time.Millisecond) // the armed deadline passes, as on an idle pooled connection
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		if got := string(readN(t, c, 6)); got != "ticket" {
			t.Fatalf("after looking, the waiting bytes read %q", got)
		}
		_ = c.SetReadDeadline(time.Now().Add(10 * time.Millisecond))
		time.Sleep(30 * time.Millisecond)
		peer.Close()
		time.Sleep(20 * time.Millisecond)
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		if !c.peerClosed() {
			t.Fatal("a connection the peer closed looked open")
		}
	})
}

// Connections the runtime does not poll (in-memory pipes) are left alone.
func TestTurnConnLeavesPipesAlone(t *testing.T) {
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	if c := newTurnConn(a); c != a {
		t.Fatalf("a pipe was wrapped: %T", c)
	}
}

// BenchmarkTurnConn is a request/response ping-pong over loopback TCP
// through a plain connection and through a turnConn; the peer is a plain
// echo in the same process. cpu-ns/op is the process's CPU time (user +
// system, both ends) per turn, the figure turnConn exists to lower.
func BenchmarkTurnConn(b *testing.B) {
	for _, wrap := range []bool{false, true} {
		name := "plain"
		if wrap {
			name = "turn"
		}
		b.Run(name, func(b *testing.B) {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				b.Fatal(err)
			}
			defer ln.Close()
			go func() {
				peer, err := ln.Accept()
				if err != nil {
					return
				}
				defer peer.Close()
				echo(peer, 512)
			}()
			c, err := net.Dial("tcp", ln.Addr().String())
			if err != nil {
				b.Fatal(err)
			}
			if wrap {
				c = newTurnConn(c)
			}
			defer c.Close()
			msg, buf := bytes.Repeat([]byte("x"), 200), make([]byte, 512)
			deadline := time.Now().Add(time.Hour)
			b.ReportAllocs()
			cpu0 := processCPU()
			b.ResetTimer()
			for range b.N {
				_ = c.SetDeadline(deadline)
				if _, err := c.Write(msg); err != nil {
					b.Fatal(err)
				}
				for n := 0; n < len(msg); {
					m, err := c.Read(buf)
					if err != nil {
						b.Fatal(err)
					}
					n += m
				}
			}
			b.StopTimer()
			b.ReportMetric(float64(processCPU()-cpu0)/float64(b.N), "cpu-ns/op")
		})
	}
}

// Close from another goroutine ends a Read that waits with no deadline:
// the connection-closed error, at once, whichever poller it waits in.
func TestTurnConnCloseEndsWaitingRead(t *testing.T) {
	eachWait(t, func(t *testing.T, inOrder bool) {
		c, _ := turnPair(t, inOrder)
		done := make(chan error, 1)
		go func() { _, err := c.Read(make([]byte, 8)); done <- err }()
		time.Sleep(50 * time.Millisecond) // let the Read wait
		c.Close()
		select {
		case err := <-done:
			if !errors.Is(err, net.ErrClosed) {
				t.Fatalf("Read ended by Close = %v, want net.ErrClosed", err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("Close did not end a waiting Read")
		}
	})
}

// Bytes that arrived before a Read that sends held bytes are read at once,
// not after the next arrival or the deadline: a pipelined request sent
// while the response to the one before was being written, and the rest of
// a message longer than the last Read's buffer (that Read waited for it,
// so no wakeup is left to say more is there).
func TestTurnConnReadsWhatArrivedBeforeTheSend(t *testing.T) {
	eachWait(t, func(t *testing.T, inOrder bool) {
		for _, tc := range []struct {
			name         string
			first, early string // the peer sends first, then early before the Read that sends
		}{
			{"pipelined", "GET1", "GET2"},
			{"longer than the buffer", "0123456789", ""},
		} {
			c, peer := turnPair(t, inOrder)
			_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
			buf := make([]byte, 4)
			go func() {
				time.Sleep(20 * time.Millisecond) // the Read below waits for it
				io.WriteString(peer, tc.first)
			}()
			if n, err := io.ReadFull(c, buf); err != nil || string(buf[:n]) != tc.first[:4] {
				t.Fatalf("%s: first read = %q, %v", tc.name, buf[:n], err)
			}
			want := tc.first[4:] + tc.early
			io.WriteString(peer, tc.early)
			time.Sleep(20 * time.Millisecond) // it is in the socket buffer
			if _, err := c.Write([]byte("response")); err != nil {
				t.Fatal(err)
			}
			start := time.Now()
			n, err := c.Read(buf)
			if err != nil {
				t.Fatalf("%s: the Read that sends = %v after %v, with %q waiting", tc.name, err, time.Since(start), want)
			}
			if got := string(buf[:n]); got != want[:n] {
				t.Fatalf("%s: read %q, want the start of %q", tc.name, got, want)
			}
			if got := readN(t, peer, len("response")); string(got) != "response" {
				t.Fatalf("%s: peer got %q", tc.name, got)
			}
		}
	})
}

// Close from another goroutine ends a Write blocked on a peer that does
// not read, with no deadline: closing is what unblocks it.
func TestTurnConnCloseEndsBlockedWrite(t *testing.T) {
	eachWait(t, func(t *testing.T, inOrder bool) {
		c, _ := turnPair(t, inOrder)
		done := make(chan error, 1)
		go func() { _, err := c.Write(make([]byte, 64<<20)); done <- err }()
		time.Sleep(100 * time.Millisecond) // the socket buffers fill
		c.Close()
		select {
		case err := <-done:
			if err == nil {
				t.Fatal("a 64 MiB Write to a peer that does not read succeeded")
			}
		case <-time.After(10 * time.Second):
			t.Fatal("Close did not end a blocked Write")
		}
	})
}

// Bytes held back that a later SetWriteDeadline fails to send (the peer
// stopped reading and the old deadline passed) are lost: every later
// Write must fail too, as on a connection whose Write failed, or the peer
// would get the bytes after them with a hole before (a streamed body's
// last 28 KiB missing, and the connection kept open).
func TestTurnConnHeldBytesLostToADeadlineFailTheNextWrite(t *testing.T) {
	eachWait(t, func(t *testing.T, inOrder bool) {
		c, _ := turnPair(t, inOrder) // the peer never reads
		_ = c.SetWriteDeadline(time.Now().Add(200 * time.Millisecond))
		if _, err := c.Write(make([]byte, 64<<20)); err == nil {
			t.Fatal("a 64 MiB Write to a peer that does not read succeeded")
		}
		_ = c.SetWriteDeadline(time.Now().Add(100 * time.Millisecond))
		if _, err := c.Write([]byte("held")); err != nil {
			t.Fatalf("a small Write is held back, not sent: %v", err)
		}
		time.Sleep(150 * time.Millisecond)
		_ = c.SetWriteDeadline(time.Now().Add(10 * time.Second)) // sends "held": the old deadline has passed
		if _, err := c.Write([]byte("after")); err == nil {
			t.Fatal("a Write after held bytes were lost succeeded")
		}
		_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
		if _, err := c.Read(make([]byte, 1)); err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("a Read after held bytes were lost: %v, want their write error at once", err)
		}
	})
}
