// grpc-go greeter for the benchmark: the same service as
// samples/helloworld, "Hello " + name, bound to 127.0.0.1 only, and
// /bench.Echo/Echo for test/bench/stream_run.sh (a bidi stream that sends
// each message back as it came, through the unknown-service handler with
// a pass-through codec); with
// --tls over TLS with the certificate and key --cert and --key name.
// Prints "listening on port N" (N from --port, 0 picks one) and exits on
// SIGTERM/SIGINT. Built in GOPATH mode against Debian's packaged modules by
// test/bench/run.sh, which generates the benchgreeter/helloworld package.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"os"
	"os/signal"
	"syscall"

	pb "benchgreeter/helloworld"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/status"
)

type greeter struct {
	pb.UnimplementedGreeterServer
}

func (greeter) SayHello(ctx context.Context, in *pb.HelloRequest) (*pb.HelloReply, error) {
	return &pb.HelloReply{Message: "Hello " + in.GetName()}, nil
}

// rawCodec passes bytes through for the echo and leaves every other
// message to the proto codec.
type rawCodec struct{ proto encoding.Codec }

func (c rawCodec) Marshal(v interface{}) ([]byte, error) {
	if b, ok := v.(*[]byte); ok {
		return *b, nil
	}
	return c.proto.Marshal(v)
}
func (c rawCodec) Unmarshal(data []byte, v interface{}) error {
	if b, ok := v.(*[]byte); ok {
		*b = append((*b)[:0], data...)
		return nil
	}
	return c.proto.Unmarshal(data, v)
}
func (c rawCodec) Name() string   { return "proto" }
func (c rawCodec) String() string { return "proto" }

func echo(srv interface{}, stream grpc.ServerStream) error {
	if m, _ := grpc.MethodFromServerStream(stream); m != "/bench.Echo/Echo" {
		return status.Errorf(codes.Unimplemented, "unknown method %s", m)
	}
	var b []byte
	for {
		if err := stream.RecvMsg(&b); err == io.EOF {
			return nil
		} else if err != nil {
			return err
		}
		if err := stream.SendMsg(&b); err != nil {
			return err
		}
	}
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
	opts = append(opts, grpc.CustomCodec(rawCodec{encoding.GetCodec("proto")}),
		grpc.UnknownServiceHandler(echo))
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
