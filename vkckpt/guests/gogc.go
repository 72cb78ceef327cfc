// gogc: allocate and drop a lot, runtime.GC, finalizers, and only the facts of
// runtime.ReadMemStats that do not depend on timing.
package main

import (
	"fmt"
	"runtime"
	"time"
)

type node struct {
	next *node
	val  [6]uint64
}

var finalized = make(chan int, 64)

// sink keeps the latest buffer reachable from a global, so buffers live on the heap.
var sink []byte

// churn builds and drops linked lists; it returns a checksum of what it built.
func churn(rounds, length int) uint64 {
	var sum uint64
	for r := 0; r < rounds; r++ {
		var head *node
		for i := 0; i < length; i++ {
			head = &node{next: head, val: [6]uint64{uint64(r), uint64(i)}}
		}
		buf := make([]byte, 64<<10)
		buf[r%len(buf)] = byte(r)
		sink = buf
		for n := head; n != nil; n = n.next {
			sum += n.val[0] ^ n.val[1]
		}
		sum += uint64(buf[r%len(buf)])
	}
	return sum
}

// finalizers drops n objects that have finalizers and waits for them all to run.
func finalizers(n int) int {
	keep := &node{val: [6]uint64{99}}
	runtime.SetFinalizer(keep, func(*node) { finalized <- -1 })
	for i := 0; i < n; i++ {
		o := &node{val: [6]uint64{uint64(i)}}
		runtime.SetFinalizer(o, func(o *node) { finalized <- int(o.val[0]) })
	}
	seen := 0
	for tries := 0; seen < n && tries < 200; tries++ {
		runtime.GC()
	drain:
		for {
			select {
			case v := <-finalized:
				if v < 0 {
					fmt.Println("FAIL: a live object was finalized")
				}
				seen++
			default:
				break drain
			}
		}
		if seen < n {
			time.Sleep(time.Millisecond)
		}
	}
	runtime.KeepAlive(keep)
	return seen
}

func main() {
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	sum := churn(400, 2000)
	runtime.GC()
	runtime.ReadMemStats(&after)
	fmt.Printf("churn sum: %d\n", sum)
	fmt.Printf("gc ran: %v\n", after.NumGC > before.NumGC)
	fmt.Printf("allocated at least 50 MiB: %v\n", after.TotalAlloc-before.TotalAlloc >= 50<<20)
	fmt.Printf("mallocs at least 800000: %v\n", after.Mallocs-before.Mallocs >= 800000)
	fmt.Printf("live heap under 16 MiB after gc: %v\n", after.HeapAlloc < 16<<20)
	fmt.Printf("frees follow mallocs: %v\n", after.Frees > before.Frees && after.Frees <= after.Mallocs)
	fmt.Printf("finalizers run: %d of 20\n", finalizers(20))
	var big [][]byte
	for i := 0; i < 64; i++ {
		big = append(big, make([]byte, 1<<20))
	}
	big[63][12345] = 1
	fmt.Printf("64 MiB live, last byte set: %d\n", big[63][12345])
	big = nil
	runtime.GC()
	var last runtime.MemStats
	runtime.ReadMemStats(&last)
	fmt.Printf("released after drop: %v\n", last.HeapAlloc < 16<<20)
	fmt.Println("gogc done")
}
