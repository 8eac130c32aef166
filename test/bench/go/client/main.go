// grpc-go client for the client benchmark (test/bench/client_run.sh): the
// modes, flags and CSV line of test/bench/client_bench.c, on grpc-go.
//
//	client --mode=unary|pingpong|stream --conns=N --outstanding=M
//	       --seconds=S --warmup=S --size=B --target=127.0.0.1:PORT
//	       [--codec=raw|proto]
//
// N ClientConns (one HTTP/2 connection each, pick_first) with M goroutines
// each, closed loop: every goroutine starts its next call (or ping) when the
// last one completes. unary calls helloworld.Greeter/SayHello; pingpong
// keeps one grpc.testing.BenchmarkService/StreamingCall per goroutine and
// sends one SimpleRequest, reads one SimpleResponse, again and again;
// stream reads StreamingFromServer as fast as it comes.
//
// --size is one response message's size on the wire, the 5-byte prefix
// included, and the requests are the bytes client_bench sends. With
// --codec=raw (the default) the requests are serialized once and replies
// are taken as bytes through a pass-through codec, so grpc-go, like our
// client and h2load, does no protobuf work per call; --codec=proto uses the
// generated stubs instead. Run with GOMAXPROCS=1 for one core.
//
// Built in GOPATH mode against Debian's packaged modules by client_run.sh,
// which generates the benchclient/helloworld and benchclient/grpc_testing
// packages.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"math/bits"
	"os"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	pb "benchclient/grpc_testing"
	hw "benchclient/helloworld"

	"github.com/golang/protobuf/proto"
	"google.golang.org/grpc"
)

const csvHeader = "client,mode,conns,outstanding,size,seconds,calls,calls_per_s,mb_per_s," +
	"mean_us,p50_us,p90_us,p99_us,p999_us,max_us,errors,cpu_s"

// --- the latency histogram: client_bench.c's, log-linear, 1/64 resolution.

const (
	subBits  = 6
	sub      = 1 << subBits
	nBuckets = (64 - subBits + 1) * sub
)

type histogram struct {
	counts          [nBuckets]uint64
	n, sumNs, maxNs uint64
}

func bucketOf(v uint64) int {
	if v < sub {
		return int(v)
	}
	msb := 63 - bits.LeadingZeros64(v)
	shift := msb - subBits
	return (shift+1)*sub + int(v>>uint(shift)) - sub
}

func bucketMid(b int) float64 {
	if b < sub {
		return float64(b)
	}
	shift := uint(b/sub - 1)
	low := float64(uint64(sub+b%sub) << shift)
	return low + float64(uint64(1)<<shift)/2
}

// add is safe from any goroutine.
func (h *histogram) add(ns uint64) {
	atomic.AddUint64(&h.counts[bucketOf(ns)], 1)
	atomic.AddUint64(&h.n, 1)
	atomic.AddUint64(&h.sumNs, ns)
	for {
		m := atomic.LoadUint64(&h.maxNs)
		if ns <= m || atomic.CompareAndSwapUint64(&h.maxNs, m, ns) {
			break
		}
	}
}

func (h *histogram) quantileUs(q float64) float64 {
	n := atomic.LoadUint64(&h.n)
	if n == 0 {
		return 0
	}
	rank := uint64(q*float64(n) + 0.999999)
	if rank == 0 {
		rank = 1
	}
	var seen uint64
	for b := 0; b < nBuckets; b++ {
		seen += atomic.LoadUint64(&h.counts[b])
		if seen >= rank {
			return bucketMid(b) / 1000
		}
	}
	return float64(atomic.LoadUint64(&h.maxNs)) / 1000
}

// --- pass-through codec: messages are []byte, serialized beforehand.

type rawCodec struct{}

func (rawCodec) Marshal(v interface{}) ([]byte, error) { return *(v.(*[]byte)), nil }
func (rawCodec) Unmarshal(data []byte, v interface{}) error {
	*(v.(*[]byte)) = data
	return nil
}
func (rawCodec) Name() string { return "proto" }

// --- state

const (
	phWarmup int32 = iota
	phMeasure
	phDone
)

var (
	mode, target, codec string
	conns, outstanding  int
	seconds, warmup     float64
	size                int

	phase                 int32
	hist                  histogram
	doneCalls, doneErrors uint64 // all phases, for progress
	mCalls, mErrors       uint64 // the measured ones
	reportedErrors        int32

	reqBytes  []byte // the request, serialized
	replyLen  int    // the expected response message's length
	helloReq  *hw.HelloRequest
	simpleReq *pb.SimpleRequest
)

func failed(err error) {
	atomic.AddUint64(&doneErrors, 1)
	if atomic.LoadInt32(&phase) == phMeasure {
		atomic.AddUint64(&mErrors, 1)
	}
	if atomic.AddInt32(&reportedErrors, 1) <= 5 {
		fmt.Fprintf(os.Stderr, "grpc-go client: %v\n", err)
	}
}

// completed counts a call, ping or streamed message; with timed, its latency.
func completed(t0 time.Time, timed bool) {
	atomic.AddUint64(&doneCalls, 1)
	if atomic.LoadInt32(&phase) == phMeasure {
		atomic.AddUint64(&mCalls, 1)
		if timed {
			hist.add(uint64(time.Since(t0)))
		}
	}
}

func checkLen(n int) error {
	if n != replyLen {
		return fmt.Errorf("reply of %d bytes, not %d", n, replyLen)
	}
	return nil
}

// --- the modes, one goroutine per outstanding call

func runUnary(cc *grpc.ClientConn) {
	ctx := context.Background()
	gc := hw.NewGreeterClient(cc)
	for atomic.LoadInt32(&phase) != phDone {
		t0 := time.Now()
		var err error
		if codec == "raw" {
			var reply []byte
			err = cc.Invoke(ctx, "/helloworld.Greeter/SayHello", &reqBytes, &reply)
			if err == nil {
				err = checkLen(len(reply))
			}
		} else {
			var r *hw.HelloReply
			r, err = gc.SayHello(ctx, helloReq)
			if err == nil {
				err = checkLen(proto.Size(r))
			}
		}
		if err != nil {
			failed(err)
			time.Sleep(time.Millisecond) // no busy loop on a dead server
			continue
		}
		completed(t0, true)
	}
}

var (
	pingpongDesc = grpc.StreamDesc{StreamName: "StreamingCall", ServerStreams: true, ClientStreams: true}
	fromSrvDesc  = grpc.StreamDesc{StreamName: "StreamingFromServer", ServerStreams: true}
)

// recv reads one response message.
func recv(s grpc.ClientStream) error {
	if codec == "raw" {
		var reply []byte
		if err := s.RecvMsg(&reply); err != nil {
			return err
		}
		return checkLen(len(reply))
	}
	r := new(pb.SimpleResponse)
	if err := s.RecvMsg(r); err != nil {
		return err
	}
	return checkLen(proto.Size(r))
}

func send(s grpc.ClientStream) error {
	if codec == "raw" {
		return s.SendMsg(&reqBytes)
	}
	return s.SendMsg(simpleReq)
}

func runStream(cc *grpc.ClientConn) {
	for atomic.LoadInt32(&phase) != phDone {
		ctx, cancel := context.WithCancel(context.Background())
		err := oneStream(ctx, cc)
		cancel()
		if atomic.LoadInt32(&phase) == phDone {
			return
		}
		if err == nil || err == io.EOF {
			err = fmt.Errorf("the stream ended")
		}
		failed(err)
		time.Sleep(time.Millisecond)
	}
}

// oneStream runs one stream until it fails or the run is over.
func oneStream(ctx context.Context, cc *grpc.ClientConn) error {
	if mode == "pingpong" {
		s, err := cc.NewStream(ctx, &pingpongDesc, "/grpc.testing.BenchmarkService/StreamingCall")
		if err != nil {
			return err
		}
		for atomic.LoadInt32(&phase) != phDone {
			t0 := time.Now()
			if err := send(s); err != nil {
				return err
			}
			if err := recv(s); err != nil {
				return err
			}
			completed(t0, true)
		}
		return nil
	}
	s, err := cc.NewStream(ctx, &fromSrvDesc, "/grpc.testing.BenchmarkService/StreamingFromServer")
	if err != nil {
		return err
	}
	if err := send(s); err != nil {
		return err
	}
	if err := s.CloseSend(); err != nil {
		return err
	}
	for atomic.LoadInt32(&phase) != phDone {
		if err := recv(s); err != nil {
			return err
		}
		completed(time.Time{}, false)
	}
	return nil
}

// --- requests: the bytes client_bench.c sends

func makeHello() {
	replySize := func(n int) int { return 5 + proto.Size(&hw.HelloReply{Message: "Hello " + strings.Repeat("x", n)}) }
	n := 0
	for replySize(n+1) <= size {
		n++
	}
	if replySize(n) != size {
		fmt.Fprintf(os.Stderr, "grpc-go client: no reply is exactly %d bytes; %d instead\n", size, replySize(n))
	}
	name := strings.Repeat("x", n)
	if n == 5 {
		name = "world" // run.sh's 18-byte case
	}
	helloReq = &hw.HelloRequest{Name: name}
	reqBytes, _ = proto.Marshal(helloReq)
	replyLen = replySize(n) - 5
}

func makeSimple() {
	respSize := func(b int) int {
		return 5 + proto.Size(&pb.SimpleResponse{Payload: &pb.Payload{Body: make([]byte, b)}})
	}
	b := 0
	for respSize(b+1) <= size {
		b++
	}
	if respSize(b) != size {
		fmt.Fprintf(os.Stderr, "grpc-go client: no response is exactly %d bytes; %d instead\n", size, respSize(b))
	}
	simpleReq = &pb.SimpleRequest{ResponseSize: int32(b), Payload: &pb.Payload{Body: make([]byte, b)}}
	reqBytes, _ = proto.Marshal(simpleReq)
	replyLen = respSize(b) - 5
}

func cpuSeconds() float64 {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return float64(ru.Utime.Sec) + float64(ru.Utime.Usec)/1e6 +
		float64(ru.Stime.Sec) + float64(ru.Stime.Usec)/1e6
}

func progress(start *time.Time) {
	last, lastCalls := time.Now(), uint64(0)
	unit := "calls"
	if mode == "stream" {
		unit = "msgs"
	}
	for range time.Tick(time.Second) {
		ph := atomic.LoadInt32(&phase)
		if ph == phDone {
			return
		}
		now, calls := time.Now(), atomic.LoadUint64(&doneCalls)
		rate := float64(calls-lastCalls) / now.Sub(last).Seconds()
		last, lastCalls = now, calls
		if ph == phWarmup {
			fmt.Fprintf(os.Stderr, "[grpc-go %s] warm-up: %.0f %s/s, %d errors\n", mode, rate, unit,
				atomic.LoadUint64(&doneErrors))
		} else if mode == "stream" {
			fmt.Fprintf(os.Stderr, "[grpc-go stream] %4.1f s: %.0f msgs/s, %.1f MB/s, %d errors\n",
				now.Sub(*start).Seconds(), rate, rate*float64(size)/1e6, atomic.LoadUint64(&mErrors))
		} else {
			fmt.Fprintf(os.Stderr, "[grpc-go %s] %4.1f s: %.0f calls/s, p50 %.1f us, p99 %.1f us, %d errors\n",
				mode, now.Sub(*start).Seconds(), rate, hist.quantileUs(0.5), hist.quantileUs(0.99),
				atomic.LoadUint64(&mErrors))
		}
	}
}

func main() {
	header := flag.Bool("csv-header", false, "print the CSV header and exit")
	flag.StringVar(&mode, "mode", "unary", "unary, pingpong or stream")
	flag.IntVar(&conns, "conns", 1, "connections (one ClientConn each)")
	flag.IntVar(&outstanding, "outstanding", 1, "calls or streams kept going per connection")
	flag.Float64Var(&seconds, "seconds", 5, "measured seconds")
	flag.Float64Var(&warmup, "warmup", 1, "seconds before measuring")
	flag.IntVar(&size, "size", 18, "response message bytes on the wire, prefix included")
	flag.StringVar(&target, "target", "127.0.0.1:50051", "server address")
	flag.StringVar(&codec, "codec", "raw", "raw (pre-serialized bytes) or proto (generated stubs)")
	flag.Parse()
	if *header {
		fmt.Println(csvHeader)
		return
	}
	if (mode != "unary" && mode != "pingpong" && mode != "stream") || (codec != "raw" && codec != "proto") ||
		conns < 1 || outstanding < 1 || seconds <= 0 || warmup < 0 {
		flag.Usage()
		os.Exit(2)
	}
	if mode == "unary" {
		makeHello()
	} else {
		makeSimple()
	}
	dial := []grpc.DialOption{grpc.WithInsecure(), grpc.WithBlock()}
	if codec == "raw" {
		dial = append(dial, grpc.WithDefaultCallOptions(grpc.ForceCodec(rawCodec{})))
	}
	ccs := make([]*grpc.ClientConn, conns)
	for i := range ccs {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		cc, err := grpc.DialContext(ctx, target, dial...)
		cancel()
		if err != nil {
			fmt.Fprintf(os.Stderr, "grpc-go client: %s: %v\n", target, err)
			os.Exit(1)
		}
		ccs[i] = cc
	}
	var start time.Time
	go progress(&start)
	for _, cc := range ccs {
		for j := 0; j < outstanding; j++ {
			if mode == "unary" {
				go runUnary(cc)
			} else {
				go runStream(cc)
			}
		}
	}
	time.Sleep(time.Duration(warmup * float64(time.Second)))
	start = time.Now()
	cpu0 := cpuSeconds()
	atomic.StoreInt32(&phase, phMeasure)
	time.Sleep(time.Duration(seconds * float64(time.Second)))
	atomic.StoreInt32(&phase, phDone)
	secs := time.Since(start).Seconds()
	cpu := cpuSeconds() - cpu0
	calls := atomic.LoadUint64(&mCalls)
	rate := float64(calls) / secs
	fmt.Fprintf(os.Stderr, "[grpc-go %s] done: %.0f %s/s over %.1f s\n", mode, rate,
		map[bool]string{true: "msgs", false: "calls"}[mode == "stream"], secs)
	line := fmt.Sprintf("grpc-go,%s,%d,%d,%d,%.3f,%d,%.1f,%.2f,", mode, conns, outstanding, size,
		secs, calls, rate, rate*float64(size)/1e6)
	if mode == "stream" || atomic.LoadUint64(&hist.n) == 0 {
		line += ",,,,,,"
	} else {
		line += fmt.Sprintf("%.1f,%.1f,%.1f,%.1f,%.1f,%.1f,",
			float64(atomic.LoadUint64(&hist.sumNs))/float64(atomic.LoadUint64(&hist.n))/1e3,
			hist.quantileUs(0.5), hist.quantileUs(0.9), hist.quantileUs(0.99), hist.quantileUs(0.999),
			float64(atomic.LoadUint64(&hist.maxNs))/1e3)
	}
	line += fmt.Sprintf("%d,%.2f", atomic.LoadUint64(&mErrors), cpu)
	fmt.Println(line)
	os.Exit(0) // calls in flight are abandoned with the process
}
