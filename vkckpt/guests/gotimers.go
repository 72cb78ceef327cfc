// gotimers: time.Sleep, time.After, time.Ticker, time.AfterFunc, timer Stop/Reset and
// select with timeouts; it prints counts and orders, never times.
package main

import (
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"
)

const unit = 20 * time.Millisecond

// sleeps checks that time.Sleep sleeps at least as long as asked.
func sleeps() {
	ok := true
	for _, d := range []time.Duration{time.Millisecond, 5 * time.Millisecond, unit} {
		t0 := time.Now()
		time.Sleep(d)
		ok = ok && time.Since(t0) >= d
	}
	fmt.Printf("sleep at least asked: %v\n", ok)
}

// order has goroutines sleep for different multiples of unit; none wakes early, and the
// wake-ups come back over a channel (their arrival order would depend on a loaded host's
// timing, so it is sorted).
func order() {
	type wake struct {
		n    int
		late bool
	}
	ch := make(chan wake)
	start := time.Now()
	for _, n := range []int{5, 1, 4, 2, 3} {
		go func(n int) {
			d := time.Duration(n) * 2 * unit
			time.Sleep(d)
			ch <- wake{n, time.Since(start) >= d}
		}(n)
	}
	got := make([]string, 0, 5)
	onTime := true
	for i := 0; i < 5; i++ {
		w := <-ch
		got = append(got, fmt.Sprint(w.n))
		onTime = onTime && w.late
	}
	sort.Strings(got)
	fmt.Printf("woke: %s, none early: %v\n", strings.Join(got, " "), onTime)
}

// ticker takes 5 ticks of a Ticker (none before its time), stops it and sees no more.
func ticker() {
	start := time.Now()
	tk := time.NewTicker(unit)
	onTime := true
	for i := 1; i <= 5; i++ {
		t := <-tk.C
		onTime = onTime && t.Sub(start) >= time.Duration(i)*unit
	}
	tk.Stop()
	select { // a tick sent before Stop may still be buffered
	case <-tk.C:
	default:
	}
	time.Sleep(3 * unit)
	select {
	case <-tk.C:
		fmt.Println("ticker: tick after stop")
	default:
	}
	fmt.Printf("ticker: 5 ticks, none early: %v\n", onTime)
}

// timeouts runs selects that time out and selects whose data comes first.
func timeouts() {
	never := make(chan int)
	timedOut := 0
	for i := 0; i < 3; i++ {
		select {
		case <-never:
		case <-time.After(unit / 2):
			timedOut++
		}
	}
	data := make(chan int, 1)
	go func() { time.Sleep(unit / 4); data <- 7 }()
	got := 0
	select {
	case v := <-data:
		got = v
	case <-time.After(20 * unit):
	}
	fmt.Printf("select: timed out %d, got %d before timeout\n", timedOut, got)
}

// timers exercises AfterFunc, Stop before firing and Reset.
func timers() {
	var mu sync.Mutex
	var fired []string
	var wg sync.WaitGroup
	add := func(s string) { mu.Lock(); fired = append(fired, s); mu.Unlock(); wg.Done() }
	wg.Add(2)
	time.AfterFunc(2*unit, func() { add("b") })
	time.AfterFunc(unit, func() { add("a") })
	cancelled := time.AfterFunc(50*unit, func() { add("never") })
	stopped := cancelled.Stop()
	t := time.NewTimer(50 * unit)
	reset := t.Reset(unit / 2)
	<-t.C
	wg.Wait()
	sort.Strings(fired)
	fmt.Printf("timers: fired %v, stopped %v, reset active %v\n", fired, stopped, reset)
}

func main() {
	sleeps()
	order()
	ticker()
	timeouts()
	timers()
	fmt.Println("gotimers done")
}
