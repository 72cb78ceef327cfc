// gohttp: a net/http server and client in one process on 127.0.0.1:0 (the kernel picks the
// port): several requests (GET, POST with a body, a 404, a keep-alive reuse), printing
// status codes and bodies only, so the output is the same on any host.
package main

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
)

func main() {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Println("listen:", err)
		os.Exit(1)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/hello", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "hello, %s", r.URL.Query().Get("name"))
	})
	mux.HandleFunc("/echo", func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		w.Header().Set("Content-Type", "text/plain")
		fmt.Fprintf(w, "%s %d bytes: %s", r.Method, len(b), strings.ToUpper(string(b)))
	})
	go http.Serve(ln, mux)
	port := ln.Addr().(*net.TCPAddr).Port
	fmt.Println("port ephemeral>=32768:", port >= 32768)
	base := fmt.Sprintf("http://127.0.0.1:%d", port)
	client := &http.Client{}
	show := func(resp *http.Response, err error) {
		if err != nil {
			fmt.Println("error:", err)
			return
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		fmt.Printf("%d %q\n", resp.StatusCode, b)
	}
	for i := 0; i < 3; i++ {
		show(client.Get(fmt.Sprintf("%s/hello?name=client%d", base, i)))
	}
	show(client.Post(base+"/echo", "text/plain", strings.NewReader("a body over loopback")))
	show(client.Get(base + "/missing"))
	big := strings.Repeat("x", 200000)
	resp, err := client.Post(base+"/echo", "text/plain", strings.NewReader(big))
	if err == nil {
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		fmt.Println(resp.StatusCode, len(b))
	} else {
		fmt.Println("error:", err)
	}
	ln.Close()
	fmt.Println("gohttp done")
}
