// grpc-go greeter for the benchmark: the same service as
// samples/helloworld, "Hello " + name, bound to 127.0.0.1 only; with
// --tls over TLS with the certificate and key --cert and --key name.
// Prints "listening on port N" (N from --port, 0 picks one) and exits on
// SIGTERM/SIGINT. Built in GOPATH mode against Debian's packaged modules by
// test/bench/run.sh, which generates the benchgreeter/helloworld package.
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"net"
	"os"
	"os/signal"
	"syscall"

	pb "benchgreeter/helloworld"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
)

type greeter struct {
	pb.UnimplementedGreeterServer
}

func (greeter) SayHello(ctx context.Context, in *pb.HelloRequest) (*pb.HelloReply, error) {
	return &pb.HelloReply{Message: "Hello " + in.GetName()}, nil
}

func main() {
	port := flag.Int("port", 0, "TCP port on 127.0.0.1 (0 picks a free one)")
	tls := flag.Bool("tls", false, "serve TLS")
	cert := flag.String("cert", "", "PEM certificate chain (with --tls)")
	key := flag.String("key", "", "PEM private key (with --tls)")
	flag.Parse()
	var opts []grpc.ServerOption
	if *tls {
		creds, err := credentials.NewServerTLSFromFile(*cert, *key)
		if err != nil {
			log.Fatalf("tls: %v", err)
		}
		opts = append(opts, grpc.Creds(creds))
	}
	lis, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", *port))
	if err != nil {
		log.Fatalf("listen: %v", err)
	}
	s := grpc.NewServer(opts...)
	pb.RegisterGreeterServer(s, greeter{})
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	go func() { <-sig; s.Stop() }()
	fmt.Printf("listening on port %d\n", lis.Addr().(*net.TCPAddr).Port)
	os.Stdout.Sync()
	if err := s.Serve(lis); err != nil {
		log.Fatalf("serve: %v", err)
	}
}
