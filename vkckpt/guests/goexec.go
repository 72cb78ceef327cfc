// goexec: os/exec runs the hello guest (arguments, environment, captured output), runs
// itself as a child that exits with a status, feeds a child's stdin, and reports a
// missing program.  Run from the directory that holds ./hello.
package main

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"os/signal"
	"strings"
	"syscall"
	"time"
)

func child(args []string) {
	switch args[0] {
	case "exit":
		fmt.Println("child: exiting 3")
		os.Exit(3)
	case "cat":
		b := make([]byte, 256)
		n, _ := os.Stdin.Read(b)
		fmt.Printf("child read: %q\n", strings.ToUpper(string(b[:n])))
	}
}

func main() {
	if len(os.Args) > 2 && os.Args[1] == "child" {
		child(os.Args[2:])
		return
	}
	cmd := exec.Command("./hello", "from", "go exec")
	cmd.Env = []string{"HELLO_GREETING=ciao"}
	out, err := cmd.Output()
	fmt.Printf("hello: err=%v exit=%d\n", err, cmd.ProcessState.ExitCode())
	fmt.Print(string(out))

	self := exec.Command(os.Args[0], "child", "exit")
	out, err = self.Output()
	var ee *exec.ExitError
	fmt.Printf("self: %q exit=%d exiterror=%v\n", out, self.ProcessState.ExitCode(),
		errors.As(err, &ee))

	cat := exec.Command(os.Args[0], "child", "cat")
	cat.Stdin = strings.NewReader("fed through stdin")
	out, err = cat.CombinedOutput()
	fmt.Printf("cat: err=%v %s", err, out)

	chld := make(chan os.Signal, 8)
	signal.Notify(chld, syscall.SIGCHLD)
	pipeline := exec.Command(os.Args[0], "child", "cat")
	first := exec.Command("./hello", "piped")
	stdout, _ := first.StdoutPipe()
	pipeline.Stdin = stdout
	var sb strings.Builder
	pipeline.Stdout = &sb
	err1, err2 := first.Start(), pipeline.Start()
	err3, err4 := pipeline.Wait(), first.Wait()
	fmt.Printf("pipeline: errs %v %v %v %v: %s", err1, err2, err3, err4, sb.String())
	select {
	case s := <-chld:
		fmt.Printf("notified: %v\n", s)
	case <-time.After(5 * time.Second):
		fmt.Println("notified: no SIGCHLD")
	}
	signal.Stop(chld)

	err = exec.Command("./no-such-program").Run()
	fmt.Printf("missing: not exist=%v\n", errors.Is(err, fs.ErrNotExist))
	fmt.Println("goexec done")
}
