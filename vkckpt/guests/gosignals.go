// gosignals: os/signal.Notify for SIGUSR1 sent to itself, signal.Stop, Ignore and Reset,
// and a signal sent while a goroutine waits for it.
package main

import (
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"
)

func send(sig syscall.Signal) {
	if err := syscall.Kill(os.Getpid(), sig); err != nil {
		fmt.Printf("FAIL: kill: %v\n", err)
	}
}

func main() {
	c := make(chan os.Signal, 4)
	signal.Notify(c, syscall.SIGUSR1)
	got := 0
	for i := 0; i < 3; i++ {
		send(syscall.SIGUSR1)
		s := <-c
		if s == syscall.SIGUSR1 {
			got++
		}
	}
	fmt.Printf("notify: %d of 3 SIGUSR1\n", got)

	done := make(chan string)
	c2 := make(chan os.Signal, 1)
	signal.Notify(c2, syscall.SIGUSR2)
	go func() { done <- (<-c2).String() }()
	time.Sleep(time.Millisecond)
	send(syscall.SIGUSR2)
	fmt.Printf("goroutine got: %s\n", <-done)

	signal.Stop(c)
	signal.Ignore(syscall.SIGUSR1)
	send(syscall.SIGUSR1)
	time.Sleep(5 * time.Millisecond)
	select {
	case <-c:
		fmt.Println("stopped channel: got a signal")
	default:
		fmt.Println("stopped channel: nothing")
	}
	fmt.Printf("ignored: %v\n", signal.Ignored(syscall.SIGUSR1))

	signal.Reset(syscall.SIGUSR2)
	c3 := make(chan os.Signal, 1)
	signal.Notify(c3, syscall.SIGHUP, syscall.SIGTERM)
	send(syscall.SIGTERM)
	fmt.Printf("sigterm caught: %v\n", <-c3)
	fmt.Println("gosignals done")
	os.Stdout.Sync()
	signal.Reset(syscall.SIGTERM)
	send(syscall.SIGTERM)
	time.Sleep(time.Second)
	fmt.Println("FAIL: still alive after SIGTERM")
}
