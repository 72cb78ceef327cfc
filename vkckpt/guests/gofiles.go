// gofiles: os.WriteFile/ReadFile, os.ReadDir (sorted), os.Pipe between goroutines, bufio
// readers and writers, rename, stat and removal, all in the directory given as argv[1].
package main

import (
	"bufio"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
)

func check(err error) {
	if err != nil {
		fmt.Printf("FAIL: %v\n", err)
		os.Exit(1)
	}
}

// files writes a few files, reads them back and lists the directory.
func files(dir string) {
	for i, name := range []string{"b.txt", "a.txt", "c.txt"} {
		data := strings.Repeat(name[:1], 100*(i+1))
		check(os.WriteFile(filepath.Join(dir, name), []byte(data), 0o644))
	}
	check(os.Mkdir(filepath.Join(dir, "sub"), 0o755))
	ents, err := os.ReadDir(dir)
	check(err)
	var names []string
	for _, e := range ents {
		names = append(names, fmt.Sprintf("%s(dir=%v)", e.Name(), e.IsDir()))
	}
	fmt.Printf("readdir: %s\n", strings.Join(names, " "))
	b, err := os.ReadFile(filepath.Join(dir, "a.txt"))
	check(err)
	fmt.Printf("a.txt: %d bytes, crc %08x\n", len(b), crc32.ChecksumIEEE(b))
	st, err := os.Stat(filepath.Join(dir, "c.txt"))
	check(err)
	fmt.Printf("c.txt: size %d mode %v\n", st.Size(), st.Mode())
	check(os.Rename(filepath.Join(dir, "b.txt"), filepath.Join(dir, "sub", "moved.txt")))
	_, err = os.Stat(filepath.Join(dir, "b.txt"))
	fmt.Printf("after rename: old name missing %v\n", errors.Is(err, fs.ErrNotExist))
}

// buffered writes lines through bufio.Writer, appends, and reads them with bufio.Scanner.
func buffered(dir string) {
	path := filepath.Join(dir, "lines")
	f, err := os.Create(path)
	check(err)
	w := bufio.NewWriterSize(f, 512)
	for i := 0; i < 500; i++ {
		fmt.Fprintf(w, "line %d %s\n", i, strings.Repeat("x", i%13))
	}
	check(w.Flush())
	check(f.Close())
	f, err = os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	check(err)
	_, err = f.WriteString("last line\n")
	check(err)
	check(f.Close())
	f, err = os.Open(path)
	check(err)
	sc := bufio.NewScanner(f)
	n, last := 0, ""
	for sc.Scan() {
		n++
		last = sc.Text()
	}
	check(sc.Err())
	off, err := f.Seek(0, io.SeekCurrent)
	check(err)
	check(f.Close())
	fmt.Printf("scanner: %d lines, last %q, offset %d\n", n, last, off)
}

// pipes streams data through os.Pipe from a writer goroutine and checks it arrives whole.
func pipes() {
	r, w, err := os.Pipe()
	check(err)
	go func() {
		bw := bufio.NewWriter(w)
		for i := 0; i < 4000; i++ {
			fmt.Fprintf(bw, "%d\n", i*i)
		}
		check(bw.Flush())
		check(w.Close())
	}()
	h := crc32.NewIEEE()
	n, err := io.Copy(h, r)
	check(err)
	check(r.Close())
	fmt.Printf("pipe: %d bytes, crc %08x\n", n, h.Sum32())
	// a reader goroutine and a writer that closes: the reader sees EOF
	r, w, err = os.Pipe()
	check(err)
	got := make(chan string)
	go func() {
		b, err := io.ReadAll(r)
		check(err)
		got <- string(b)
	}()
	_, err = w.WriteString("through the pipe")
	check(err)
	check(w.Close())
	fmt.Printf("pipe reader: %q\n", <-got)
	check(r.Close())
}

// syncs calls fsync on files with storage behind them (nil) and without (EINVAL).
func syncs(dir string) {
	f, err := os.Create(filepath.Join(dir, "synced"))
	check(err)
	_, err = f.WriteString("durable")
	check(err)
	d, err := os.Open(dir)
	check(err)
	null, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	check(err)
	r, w, err := os.Pipe()
	check(err)
	einval := func(err error) bool { return errors.Is(err, syscall.EINVAL) }
	fmt.Printf("fsync: file %v, dir %v, pipe EINVAL %v, /dev/null EINVAL %v\n",
		f.Sync(), d.Sync(), einval(w.Sync()), einval(null.Sync()))
	for _, c := range []*os.File{f, d, null, r, w} {
		check(c.Close())
	}
	check(os.Remove(filepath.Join(dir, "synced")))
}

// limits lowers RLIMIT_NOFILE, opens files until EMFILE and puts the limit back.
func limits(dir string) {
	var orig syscall.Rlimit
	check(syscall.Getrlimit(syscall.RLIMIT_NOFILE, &orig))
	low := orig
	low.Cur = 16
	check(syscall.Setrlimit(syscall.RLIMIT_NOFILE, &low))
	var files []*os.File
	var err error
	for len(files) < 64 {
		var f *os.File
		if f, err = os.Open(dir); err != nil {
			break
		}
		files = append(files, f)
	}
	fmt.Printf("nofile 16: opened %d, then EMFILE %v\n", len(files), errors.Is(err, syscall.EMFILE))
	for _, f := range files {
		check(f.Close())
	}
	check(syscall.Setrlimit(syscall.RLIMIT_NOFILE, &orig))
	f, err := os.Open(dir)
	check(err)
	check(f.Close())
}

func main() {
	if len(os.Args) < 2 {
		fmt.Println("usage: gofiles DIR")
		os.Exit(2)
	}
	dir := os.Args[1]
	files(dir)
	buffered(dir)
	pipes()
	limits(dir)
	syncs(dir)
	for _, name := range []string{"a.txt", "c.txt", "lines", "sub"} {
		check(os.RemoveAll(filepath.Join(dir, name)))
	}
	ents, err := os.ReadDir(dir)
	check(err)
	fmt.Printf("cleaned up: %d left\n", len(ents))
	fmt.Println("gofiles done")
}
