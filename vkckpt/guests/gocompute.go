// gocompute: goroutines, channels, sync.WaitGroup and a mutex computing deterministic
// results, first with GOMAXPROCS from the environment (or the CPU count), then with 4 and 1;
// with 1, a goroutine spinning without calls must be preempted (SIGURG) for main to go on.
package main

import (
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"time"
)

// mix is a 64-bit hash step (splitmix64).
func mix(x uint64) uint64 {
	x += 0x9e3779b97f4a7c15
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9
	x = (x ^ (x >> 27)) * 0x94d049bb133111eb
	return x ^ (x >> 31)
}

type part struct {
	id  int
	acc uint64
}

// workers hashes n ranges on n goroutines; results come back over a channel in any order.
func workers(n, per int) uint64 {
	out := make(chan part)
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func(id int) {
			defer wg.Done()
			acc := uint64(id)
			for j := 0; j < per; j++ {
				acc = mix(acc + uint64(j))
			}
			out <- part{id, acc}
		}(i)
	}
	go func() { wg.Wait(); close(out) }()
	parts := make([]uint64, n)
	for p := range out {
		parts[p.id] = p.acc
	}
	var total uint64
	for i, a := range parts {
		total ^= a * uint64(i+1)
	}
	return total
}

// pipeline passes numbers through a chain of stages joined by unbuffered channels.
func pipeline(stages, count int) uint64 {
	src := make(chan uint64)
	in := src
	for s := 0; s < stages; s++ {
		next := make(chan uint64)
		go func(s int, in <-chan uint64, out chan<- uint64) {
			for v := range in {
				out <- mix(v ^ uint64(s))
			}
			close(out)
		}(s, in, next)
		in = next
	}
	go func() {
		for i := 0; i < count; i++ {
			src <- uint64(i)
		}
		close(src)
	}()
	var sum uint64
	for v := range in {
		sum += v
	}
	return sum
}

// counter has many goroutines increment one mutex-protected counter and one atomic.
func counter(gs, each int) (int, int64) {
	var mu sync.Mutex
	var wg sync.WaitGroup
	var atom int64
	n := 0
	for g := 0; g < gs; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < each; i++ {
				mu.Lock()
				n++
				mu.Unlock()
				atomic.AddInt64(&atom, 1)
				if i%64 == 0 {
					runtime.Gosched()
				}
			}
		}()
	}
	wg.Wait()
	return n, atom
}

func round(label string) {
	fmt.Printf("%s: workers=%016x\n", label, workers(8, 20000))
	fmt.Printf("%s: pipeline=%016x\n", label, pipeline(6, 3000))
	n, a := counter(16, 2000)
	fmt.Printf("%s: counter=%d atomic=%d\n", label, n, a)
}

// preempt spins on a flag with no calls in the loop: with one P, main can set the flag only
// after the runtime has preempted the spinner asynchronously.
func preempt() {
	var flag int32
	done := make(chan uint64)
	go func() {
		var spins uint64
		for atomic.LoadInt32(&flag) == 0 {
			spins++
		}
		done <- spins
	}()
	time.Sleep(time.Millisecond)
	atomic.StoreInt32(&flag, 1)
	spins := <-done
	fmt.Printf("preempted spinner stopped: %v\n", spins > 0)
}

func main() {
	fmt.Printf("gomaxprocs positive: %v\n", runtime.GOMAXPROCS(0) > 0)
	round("default")
	runtime.GOMAXPROCS(4)
	fmt.Printf("gomaxprocs now: %d\n", runtime.GOMAXPROCS(0))
	round("four")
	runtime.GOMAXPROCS(1)
	round("one")
	preempt()
	fmt.Println("gocompute done")
}
