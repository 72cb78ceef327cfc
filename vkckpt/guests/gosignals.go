// gosignals: os/signal.Notify for SIGUSR1 sent to itself, signal.Stop, Ignore and Reset,
// a signal sent while a goroutine waits for it, faults the runtime turns into panics
// (SIGSEGV, SIGFPE) recovered on several goroutines, EPIPE on a pipe with no reader, and
// finally death by SIGTERM once its handler is reset.
package main

import (
	"errors"
	"fmt"
	"os"
	"os/signal"
	"runtime"
	"sync"
	"syscall"
	"time"
)

type cell struct{ v int }

var zero = 0

// fault runs f and returns the runtime error it panicked with.
func fault(f func()) (msg string) {
	defer func() {
		if r := recover(); r != nil {
			msg = fmt.Sprint(r)
		}
	}()
	f()
	return "no panic"
}

// faults dereferences nil and divides by zero on several goroutines at once.
func faults() {
	var wg sync.WaitGroup
	msgs := make([]string, 8)
	for i := range msgs {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			if i%2 == 0 {
				var c *cell
				msgs[i] = fault(func() { c.v = i })
			} else {
				msgs[i] = fault(func() { msgs[i] = fmt.Sprint(i / zero) })
			}
		}(i)
	}
	wg.Wait()
	fmt.Printf("nil deref: %s\n", msgs[0])
	fmt.Printf("divide: %s\n", msgs[1])
	same := true
	for i := range msgs {
		same = same && msgs[i] == msgs[i%2]
	}
	fmt.Printf("all 8 goroutines recovered alike: %v\n", same)
}

// epipe writes to a pipe whose reader is closed: an error, not a SIGPIPE death.
func epipe() {
	r, w, err := os.Pipe()
	if err != nil {
		fmt.Printf("FAIL: pipe: %v\n", err)
		return
	}
	r.Close()
	_, err = w.Write([]byte("nobody reads this"))
	w.Close()
	fmt.Printf("write without reader: EPIPE %v\n", errors.Is(err, syscall.EPIPE))
}

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
	runtime.GC()
	faults()
	epipe()
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
