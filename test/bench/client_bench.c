/*
 * client_bench: a closed-loop load generator on uvgrpc's channel API, the
 * client side of test/bench/client_run.sh (docs/benchmarks.md, "The client
 * benchmark"). One loop, N channels (a channel has one connection), and on
 * each channel M calls kept going: every completion starts the next call.
 *
 *   client_bench --mode=unary    --conns=N --outstanding=M --size=B
 *       helloworld.Greeter/SayHello through uvg_channel_unary(); the
 *       request is the HelloRequest h2load sends in the same run
 *   client_bench --mode=pingpong --conns=N --outstanding=M --size=B
 *       grpc.testing.BenchmarkService/StreamingCall: M bidi streams per
 *       channel, each sends one SimpleRequest and reads one SimpleResponse,
 *       again and again (uvg_client_call_start/send/read)
 *   client_bench --mode=stream   --conns=N --outstanding=M --size=B
 *       grpc.testing.BenchmarkService/StreamingFromServer: M server streams
 *       per channel, read as fast as they come (messages/s and MB/s)
 *   client_bench --mode=echo     --conns=N --outstanding=M --size=B
 *       /bench.Echo/Echo (test/bench/stream_run.sh): one bidi stream per
 *       channel with M messages of B bytes (the message itself, no prefix)
 *       in flight; each echo that comes back sends the next (messages/s
 *       and MB/s of echoes)
 *
 * --size is the size of one response message on the wire, gRPC's 5-byte
 * prefix included, as in test/bench/run.sh: 18 is SayHello's "Hello world";
 * the request carries about as many bytes (the name, or a payload of the
 * same length). --seconds of measurement follow --warmup seconds whose
 * calls are not counted; --target is a channel target (127.0.0.1:PORT);
 * --window sets the channels' per-stream receive window (default: the
 * library's, 64 KiB), for looking into streaming throughput.
 *
 * Latency (unary and ping-pong) goes into a log-linear histogram of fixed
 * size: no allocation per call on this side. Progress goes to stderr once a
 * second; the result is one CSV line on stdout, with the columns that
 * `client_bench --csv-header` prints (the grpc-go client prints the same):
 * latencies in microseconds, MB/s of response messages (10^6 bytes), and
 * cpu_s, this process's user + system CPU seconds over the measured time.
 */
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <uvgrpc.h>

#include "grpc/testing/messages.pb-c.h"
#include "helloworld.pb-c.h"

#define CSV_HEADER                                                         \
  "client,mode,conns,outstanding,size,seconds,calls,calls_per_s,mb_per_s," \
  "mean_us,p50_us,p90_us,p99_us,p999_us,max_us,errors,cpu_s"

/* ---- the latency histogram ----
 *
 * Log-linear, as HdrHistogram: values below 2^SUB_BITS nanoseconds have a
 * bucket each; above, every power of two is split into 2^SUB_BITS buckets,
 * so a bucket is at most 1/64 of its value wide (1.6%). */

#define SUB_BITS 6
#define SUB (1u << SUB_BITS)
#define NBUCKETS ((64 - SUB_BITS + 1) * SUB)

typedef struct {
  uint64_t counts[NBUCKETS];
  uint64_t n, sum_ns, max_ns;
} hist_t;

static unsigned bucket_of(uint64_t v) {
  if (v < SUB) return (unsigned)v;
  unsigned msb = 63u - (unsigned)__builtin_clzll(v);
  unsigned shift = msb - SUB_BITS;
  return (shift + 1) * SUB + (unsigned)((v >> shift) - SUB);
}

/* The middle of bucket `b`, in nanoseconds. */
static double bucket_mid(unsigned b) {
  if (b < SUB) return b;
  unsigned shift = b / SUB - 1;
  double low = (double)((uint64_t)(SUB + b % SUB) << shift);
  return low + (double)((uint64_t)1 << shift) / 2;
}

static void hist_add(hist_t *h, uint64_t ns) {
  h->counts[bucket_of(ns)]++;
  h->n++;
  h->sum_ns += ns;
  if (ns > h->max_ns) h->max_ns = ns;
}

/* The q-quantile (0 < q <= 1) in microseconds; 0 when empty. */
static double hist_quantile_us(const hist_t *h, double q) {
  if (h->n == 0) return 0;
  uint64_t rank = (uint64_t)(q * (double)h->n + 0.999999), seen = 0;
  if (rank == 0) rank = 1;
  for (unsigned b = 0; b < NBUCKETS; b++) {
    seen += h->counts[b];
    if (seen >= rank) return bucket_mid(b) / 1000.0;
  }
  return (double)h->max_ns / 1000.0;
}

/* ---- configuration ---- */

enum { MODE_UNARY, MODE_PINGPONG, MODE_STREAM, MODE_ECHO };
static const char *const mode_names[] = {"unary", "pingpong", "stream", "echo"};

static struct {
  int mode, conns, outstanding;
  double seconds, warmup;
  size_t size;
  const char *target, *dump;
  uint32_t window; /* the channels' initial_window_size; 0: the default */
} cfg = {MODE_UNARY, 1, 1, 5, 1, 18, "127.0.0.1:50051", NULL, 0};

/* ---- state ---- */

enum { PH_WARMUP, PH_MEASURE, PH_DONE };

typedef struct {
  uvg_channel_t *ch;
  uvg_client_call_t *call; /* a streaming slot's call */
  uint64_t t0;             /* when the call (or the ping) started */
  int conn;
} slot_t;

static uv_loop_t *loop;
static uvg_channel_t **channels;
static slot_t *slots;
static int nslots;
static int phase = PH_WARMUP;
static uv_timer_t phase_timer, progress_timer;

static uint8_t *request;   /* the request message, without the prefix */
static size_t request_len; /* its length */
static size_t reply_len;   /* the length of the expected response message */
static const char *method;

static hist_t hist;                      /* the measured calls */
static uint64_t done_calls, done_errors; /* all phases, for progress */
static uint64_t m_calls, m_errors;       /* the measured ones */
static uint64_t m_start_ns, m_end_ns, last_calls, reported_errors;
static double m_cpu0, m_cpu;

static double cpu_seconds(void) {
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  return (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 +
         (double)ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6;
}

static void call_failed(const uvg_status_t *st) {
  done_errors++;
  if (phase == PH_MEASURE) m_errors++;
  if (reported_errors++ < 5)
    fprintf(stderr, "client_bench: call ended %s: %s\n",
            uvg_status_code_name(st->code), st->message);
}

/* A call (or a ping, or a streamed message) is complete. */
static void completed(slot_t *s, int timed) {
  uint64_t now = uv_hrtime();
  done_calls++;
  if (phase == PH_MEASURE) {
    m_calls++;
    if (timed) hist_add(&hist, now - s->t0);
  }
  s->t0 = now;
}

/* ---- unary ---- */

static void start_unary(slot_t *s);

static void on_unary(const uvg_status_t *st, const uint8_t *reply, size_t len,
                     void *user_data) {
  slot_t *s = user_data;
  (void)reply;
  if (phase == PH_DONE) return;
  if (st->code != UVG_STATUS_OK) {
    call_failed(st);
  } else if (len != reply_len) {
    uvg_status_t bad = {UVG_STATUS_INTERNAL, "reply of an unexpected size",
                        NULL, 0};
    call_failed(&bad);
  } else {
    completed(s, 1);
  }
  start_unary(s);
}

static void start_unary(slot_t *s) {
  static const uvg_client_call_options_t opts = {.wait_for_ready = 1};
  s->t0 = uv_hrtime();
  int rc = uvg_channel_unary(s->ch, method, request, request_len, &opts,
                             on_unary, s);
  if (rc != 0) {
    fprintf(stderr, "client_bench: uvg_channel_unary: %s\n", uvg_strerror(rc));
    exit(1);
  }
}

/* ---- streams ---- */

static void start_stream(slot_t *s);

static void ping(slot_t *s) {
  int rc = uvg_client_call_send(s->call, request, request_len, 0, NULL, NULL);
  if (rc == 0) rc = uvg_client_call_read(s->call);
  (void)rc; /* a failure ends the call: on_status follows */
}

/* The request buffer never changes: sent without copying. */
static void on_echo_sent(uvg_client_call_t *call, int status, void *data) {
  (void)call;
  (void)status;
  (void)data;
}

static void on_stream_message(uvg_client_call_t *call, const uint8_t *msg,
                              size_t len, void *user_data) {
  slot_t *s = user_data;
  (void)msg;
  if (phase == PH_DONE) return;
  if (len != reply_len) {
    uvg_status_t bad = {UVG_STATUS_INTERNAL, "reply of an unexpected size",
                        NULL, 0};
    call_failed(&bad);
    uvg_client_call_cancel(call);
    return;
  }
  if (cfg.mode == MODE_PINGPONG) {
    completed(s, 1);
    ping(s);
  } else if (cfg.mode == MODE_ECHO) {
    completed(s, 0);
    uvg_client_call_send(call, request, request_len, 0, on_echo_sent, NULL);
    uvg_client_call_read(call);
  } else {
    completed(s, 0);
    uvg_client_call_read(call);
  }
}

static void on_stream_status(uvg_client_call_t *call, const uvg_status_t *st,
                             const uvg_metadata_t *trailers, size_t n,
                             void *user_data) {
  slot_t *s = user_data;
  (void)call;
  (void)trailers;
  (void)n;
  s->call = NULL;
  if (phase == PH_DONE) return;
  /* a stream never ends by itself here: count it and start another */
  call_failed(st);
  start_stream(s);
}

static void start_stream(slot_t *s) {
  static const uvg_client_call_options_t opts = {.wait_for_ready = 1};
  static const uvg_client_call_cbs_t cbs = {NULL, on_stream_message,
                                            on_stream_status};
  int rc = uvg_client_call_start(s->ch, method, &opts, &cbs, s, &s->call);
  if (rc != 0) {
    fprintf(stderr, "client_bench: uvg_client_call_start: %s\n",
            uvg_strerror(rc));
    exit(1);
  }
  s->t0 = uv_hrtime();
  if (cfg.mode == MODE_PINGPONG) {
    ping(s);
  } else if (cfg.mode == MODE_ECHO) {
    for (int i = 0; i < cfg.outstanding; i++)
      uvg_client_call_send(s->call, request, request_len, 0, on_echo_sent, NULL);
    uvg_client_call_read(s->call);
  } else if (uvg_client_call_send(s->call, request, request_len, 0, NULL,
                                  NULL) == 0 &&
             uvg_client_call_half_close(s->call) == 0) {
    uvg_client_call_read(s->call);
  }
}

/* ---- phases and progress ---- */

static void print_progress(uint64_t now) {
  static uint64_t last_ns;
  double dt = last_ns ? (double)(now - last_ns) / 1e9 : 1.0;
  double rate = (double)(done_calls - last_calls) / dt;
  last_ns = now;
  last_calls = done_calls;
  if (phase == PH_WARMUP) {
    fprintf(stderr, "[uvgrpc %s] warm-up: %.0f %s/s, %" PRIu64 " errors\n",
            mode_names[cfg.mode], rate,
            cfg.mode >= MODE_STREAM ? "msgs" : "calls", done_errors);
    return;
  }
  double t = (double)(now - m_start_ns) / 1e9;
  if (cfg.mode >= MODE_STREAM)
    fprintf(stderr,
            "[uvgrpc %s] %4.1f s: %.0f msgs/s, %.1f MB/s, %" PRIu64
            " errors\n",
            mode_names[cfg.mode], t, rate, rate * (double)(cfg.size) / 1e6, m_errors);
  else
    fprintf(stderr,
            "[uvgrpc %s] %4.1f s: %.0f calls/s, p50 %.1f us, p99 %.1f us, "
            "%" PRIu64 " errors\n",
            mode_names[cfg.mode], t, rate, hist_quantile_us(&hist, 0.5),
            hist_quantile_us(&hist, 0.99), m_errors);
}

static void on_progress(uv_timer_t *t) {
  (void)t;
  print_progress(uv_hrtime());
}

static void on_channel_closed(uvg_channel_t *ch, void *data) {
  (void)ch;
  (void)data;
}

static void on_phase(uv_timer_t *t) {
  if (phase == PH_WARMUP) {
    phase = PH_MEASURE;
    m_start_ns = uv_hrtime();
    m_cpu0 = cpu_seconds();
    uv_timer_start(t, on_phase, (uint64_t)(cfg.seconds * 1000), 0);
    return;
  }
  m_end_ns = uv_hrtime();
  m_cpu = cpu_seconds() - m_cpu0;
  print_progress(m_end_ns);
  phase = PH_DONE;
  /* calls in flight end CANCELLED and are not counted */
  for (int i = 0; i < cfg.conns; i++)
    uvg_channel_close(channels[i], on_channel_closed, NULL);
  uv_close((uv_handle_t *)&phase_timer, NULL);
  uv_close((uv_handle_t *)&progress_timer, NULL);
}

/* ---- requests ---- */

static size_t hello_reply_size(size_t name_len) {
  size_t text = name_len + 6;
  size_t varint = 1;
  for (size_t v = text; v >= 0x80; v >>= 7) varint++;
  return 1 + varint + text;
}

/* The HelloRequest whose reply is cfg.size bytes on the wire. */
static int make_hello(void) {
  size_t n = 0;
  while (5 + hello_reply_size(n + 1) <= cfg.size) n++;
  if (5 + hello_reply_size(n) != cfg.size)
    fprintf(stderr,
            "client_bench: no reply is exactly %zu bytes; %zu instead\n",
            cfg.size, 5 + hello_reply_size(n));
  char *name = malloc(n + 1);
  if (name == NULL) return -1;
  /* run.sh's 18-byte case says "world" */
  if (n == 5)
    memcpy(name, "world", 5);
  else
    memset(name, 'x', n);
  name[n] = '\0';
  Helloworld__HelloRequest req = HELLOWORLD__HELLO_REQUEST__INIT;
  req.name = name;
  request_len = helloworld__hello_request__get_packed_size(&req);
  request = malloc(request_len + 1);
  if (request != NULL) helloworld__hello_request__pack(&req, request);
  free(name);
  reply_len = hello_reply_size(n);
  method = "/helloworld.Greeter/SayHello";
  return request != NULL ? 0 : -1;
}

/* A SimpleResponse with `body` payload bytes: its packed size. */
static size_t simple_response_size(size_t body) {
  Grpc__Testing__Payload payload = GRPC__TESTING__PAYLOAD__INIT;
  payload.body.len = body;
  Grpc__Testing__SimpleResponse resp = GRPC__TESTING__SIMPLE_RESPONSE__INIT;
  resp.payload = &payload;
  return grpc__testing__simple_response__get_packed_size(&resp);
}

/* The SimpleRequest whose response is cfg.size bytes on the wire; it
 * carries a payload of the same length. */
static int make_simple(void) {
  size_t b = 0;
  while (5 + simple_response_size(b + 1) <= cfg.size) b++;
  if (5 + simple_response_size(b) != cfg.size)
    fprintf(stderr,
            "client_bench: no response is exactly %zu bytes; %zu instead\n",
            cfg.size, 5 + simple_response_size(b));
  uint8_t *body = calloc(1, b + 1);
  if (body == NULL) return -1;
  Grpc__Testing__Payload payload = GRPC__TESTING__PAYLOAD__INIT;
  payload.body.data = body;
  payload.body.len = b;
  Grpc__Testing__SimpleRequest req = GRPC__TESTING__SIMPLE_REQUEST__INIT;
  req.response_size = (int32_t)b;
  req.payload = &payload;
  request_len = grpc__testing__simple_request__get_packed_size(&req);
  request = malloc(request_len + 1);
  if (request != NULL) grpc__testing__simple_request__pack(&req, request);
  free(body);
  reply_len = simple_response_size(b);
  method = cfg.mode == MODE_PINGPONG
               ? "/grpc.testing.BenchmarkService/StreamingCall"
               : "/grpc.testing.BenchmarkService/StreamingFromServer";
  return request != NULL ? 0 : -1;
}

/* Echo: --size bytes, sent and expected back as they are. */
static int make_echo(void) {
  request_len = reply_len = cfg.size;
  request = malloc(cfg.size + 1);
  if (request == NULL) return -1;
  for (size_t i = 0; i < cfg.size; i++) request[i] = (uint8_t)i;
  method = "/bench.Echo/Echo";
  return 0;
}

/* Writes the request as a gRPC message (prefix + bytes), for h2load -d. */
static int dump_request(const char *path) {
  FILE *f = fopen(path, "wb");
  if (f == NULL) return -1;
  uint8_t head[5] = {0, (uint8_t)(request_len >> 24),
                     (uint8_t)(request_len >> 16), (uint8_t)(request_len >> 8),
                     (uint8_t)request_len};
  int ok = fwrite(head, 1, 5, f) == 5 &&
           fwrite(request, 1, request_len, f) == request_len;
  return fclose(f) == 0 && ok ? 0 : -1;
}

/* ---- main ---- */

static void usage(const char *argv0) {
  fprintf(
      stderr,
      "usage: %s [--mode=unary|pingpong|stream|echo] [--conns=N] [--outstanding=M]\n"
      "       [--seconds=S] [--warmup=S] [--size=BYTES] [--target=HOST:PORT]\n"
      "       [--window=BYTES] [--dump-request=FILE] | --csv-header\n",
      argv0);
  exit(2);
}

/* "--name=value" or "--name value": the value, or NULL if `arg` is not it. */
static const char *opt(int argc, char **argv, int *i, const char *name) {
  size_t n = strlen(name);
  if (strncmp(argv[*i], name, n) != 0) return NULL;
  if (argv[*i][n] == '=') return argv[*i] + n + 1;
  if (argv[*i][n] == '\0' && *i + 1 < argc) return argv[++*i];
  return NULL;
}

int main(int argc, char **argv) {
  for (int i = 1; i < argc; i++) {
    const char *v;
    if (strcmp(argv[i], "--csv-header") == 0) {
      puts(CSV_HEADER);
      return 0;
    } else if ((v = opt(argc, argv, &i, "--mode")) != NULL) {
      int m = -1;
      for (int k = 0; k < 4; k++)
        if (strcmp(v, mode_names[k]) == 0) m = k;
      if (m < 0) usage(argv[0]);
      cfg.mode = m;
    } else if ((v = opt(argc, argv, &i, "--conns")) != NULL) {
      cfg.conns = atoi(v);
    } else if ((v = opt(argc, argv, &i, "--outstanding")) != NULL) {
      cfg.outstanding = atoi(v);
    } else if ((v = opt(argc, argv, &i, "--seconds")) != NULL) {
      cfg.seconds = atof(v);
    } else if ((v = opt(argc, argv, &i, "--warmup")) != NULL) {
      cfg.warmup = atof(v);
    } else if ((v = opt(argc, argv, &i, "--size")) != NULL) {
      cfg.size = (size_t)strtoul(v, NULL, 10);
    } else if ((v = opt(argc, argv, &i, "--target")) != NULL) {
      cfg.target = v;
    } else if ((v = opt(argc, argv, &i, "--window")) != NULL) {
      cfg.window = (uint32_t)strtoul(v, NULL, 10);
    } else if ((v = opt(argc, argv, &i, "--dump-request")) != NULL) {
      cfg.dump = v;
    } else {
      usage(argv[0]);
    }
  }
  if (cfg.conns < 1 || cfg.outstanding < 1 || cfg.seconds <= 0 ||
      cfg.warmup < 0)
    usage(argv[0]);
  int made = cfg.mode == MODE_UNARY  ? make_hello()
             : cfg.mode == MODE_ECHO ? make_echo()
                                     : make_simple();
  if (made != 0) {
    fprintf(stderr, "client_bench: out of memory\n");
    return 1;
  }
  if (cfg.dump != NULL) {
    if (dump_request(cfg.dump) != 0) {
      perror(cfg.dump);
      return 1;
    }
    return 0;
  }
  signal(SIGPIPE, SIG_IGN); /* libuv writes with write(2) */
  loop = uv_default_loop();
  channels = calloc((size_t)cfg.conns, sizeof(*channels));
  /* echo: one stream per channel, with --outstanding messages on it */
  nslots = cfg.conns * (cfg.mode == MODE_ECHO ? 1 : cfg.outstanding);
  slots = calloc((size_t)nslots, sizeof(*slots));
  if (channels == NULL || slots == NULL) return 1;
  uvg_channel_options_t copts;
  uvg_channel_options_init(&copts);
  if (cfg.window) copts.initial_window_size = cfg.window;
  for (int i = 0; i < cfg.conns; i++) {
    int rc =
        uvg_channel_new(loop, cfg.target, uvg_insecure_channel_credentials(),
                        &copts, &channels[i]);
    if (rc != 0) {
      fprintf(stderr, "client_bench: %s: %s\n", cfg.target, uvg_strerror(rc));
      return 1;
    }
  }
  for (int i = 0; i < nslots; i++) {
    slot_t *s = &slots[i];
    s->conn = i / (nslots / cfg.conns);
    s->ch = channels[s->conn];
    if (cfg.mode == MODE_UNARY)
      start_unary(s);
    else
      start_stream(s);
  }
  uv_timer_init(loop, &phase_timer);
  uv_timer_init(loop, &progress_timer);
  if (cfg.warmup > 0) {
    uv_timer_start(&phase_timer, on_phase, (uint64_t)(cfg.warmup * 1000), 0);
  } else {
    on_phase(&phase_timer); /* straight to measuring */
  }
  uv_timer_start(&progress_timer, on_progress, 1000, 1000);
  uv_run(loop, UV_RUN_DEFAULT);
  uv_loop_close(loop);

  double secs = (double)(m_end_ns - m_start_ns) / 1e9;
  double rate = secs > 0 ? (double)m_calls / secs : 0;
  printf("uvgrpc,%s,%d,%d,%zu,%.3f,%" PRIu64 ",%.1f,%.2f,",
         mode_names[cfg.mode], cfg.conns, cfg.outstanding, cfg.size, secs,
         m_calls, rate, rate * (double)cfg.size / 1e6);
  if (cfg.mode >= MODE_STREAM || hist.n == 0)
    printf(",,,,,,");
  else
    printf("%.1f,%.1f,%.1f,%.1f,%.1f,%.1f,",
           (double)hist.sum_ns / (double)hist.n / 1e3,
           hist_quantile_us(&hist, 0.5), hist_quantile_us(&hist, 0.9),
           hist_quantile_us(&hist, 0.99), hist_quantile_us(&hist, 0.999),
           (double)hist.max_ns / 1e3);
  printf("%" PRIu64 ",%.2f\n", m_errors, m_cpu);
  free(request);
  free(channels);
  free(slots);
  return 0;
}
