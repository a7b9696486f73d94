package proxy

import (
	"net"
	"testing"
	"time"
)

// Two Closes at once must not take another connection out of readyOrder.
// The second Close used to close the descriptor while the first was still
// about to remove it from readyOrder's epoll instance; a connection opened
// in between got the number, and the first Close's EPOLL_CTL_DEL removed
// that one, which then never woke again. The hook holds the first Close at
// that point, so the test does what the race needs every time.
func TestTurnConnConcurrentClosesLeaveOtherSocketsInOrder(t *testing.T) {
	if !waitsInOrder {
		t.Skip("reads do not wait in readyOrder here")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go echo(c, 64)
		}
	}()
	dial := func() *turnConn {
		plain, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		c, ok := newTurnConnWaiting(plain, true).(*turnConn)
		if !ok || c.inOrder == nil {
			t.Skip("the socket did not join readyOrder")
		}
		return c
	}

	closing := dial()
	held, release := make(chan struct{}), make(chan struct{})
	hook := func(c *turnConn) {
		if c == closing {
			close(held)
			<-release
		}
	}
	testHookClosing.Store(&hook)
	t.Cleanup(func() { testHookClosing.Store(nil) })
	firstDone := make(chan struct{})
	go func() { closing.Close(); close(firstDone) }()
	<-held
	secondDone := make(chan struct{})
	go func() { closing.Close(); close(secondDone) }()
	select {
	case <-secondDone:
	case <-time.After(50 * time.Millisecond): // the second waits for the first, as it should
	}
	fresh := dial() // takes the number, if the second Close freed it
	close(release)
	<-firstDone
	<-secondDone
	defer fresh.Close()

	fresh.SetReadDeadline(time.Now().Add(2 * time.Second))
	if _, err := fresh.Write([]byte("x")); err != nil {
		t.Fatal(err)
	}
	if _, err := fresh.Read(make([]byte, 1)); err != nil {
		t.Fatalf("a connection opened while another closed twice: %v (the first Close took it out of readyOrder)", err)
	}
}
