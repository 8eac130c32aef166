/* Length-Prefixed-Message framing (lib/rpc/framing.c): the deframer must
 * yield the same messages however the bytes are split. */
#include <stddef.h>
#include <stdint.h>

#include "rpc/rpc.h"
#include "test.h"

/* ---- a collecting callback ---- */

#define MAX_MSGS 256

typedef struct {
  int n;
  uint8_t *msg[MAX_MSGS];
  uint32_t len[MAX_MSGS];
  int compressed[MAX_MSGS];
  int stop_at; /* return stop_rc on the stop_at-th message (1-based), 0: never */
  int stop_rc;
} sink_t;

/* Keeps a copy (plain malloc: not what the tests count), since the
 * message is only lent for the call. */
static int collect(void *arg, int compressed, const uint8_t *msg,
                   uint32_t len) {
  sink_t *s = arg;
  if (s->n < MAX_MSGS) {
    s->msg[s->n] = len > 0 ? malloc(len) : NULL;
    if (len > 0) memcpy(s->msg[s->n], msg, len);
    s->len[s->n] = len;
    s->compressed[s->n] = compressed;
  }
  s->n++;
  if (s->stop_at != 0 && s->n == s->stop_at) return s->stop_rc;
  return 0;
}

static void sink_init(sink_t *s) { memset(s, 0, sizeof(*s)); }

static void sink_free(sink_t *s) {
  for (int i = 0; i < s->n && i < MAX_MSGS; i++) free(s->msg[i]);
  sink_init(s);
}

/* Appends one framed message to out; returns the new length. */
static size_t frame(uint8_t *out, size_t at, int compressed, const void *msg,
                    uint32_t len) {
  uvg__frame_header(out + at, compressed, len);
  if (len > 0) memcpy(out + at + UVG__FRAME_HEADER_LEN, msg, len);
  return at + UVG__FRAME_HEADER_LEN + len;
}

/* ---- tests ---- */

static void test_frame_header_big_endian(void) {
  uint8_t h[UVG__FRAME_HEADER_LEN];
  uvg__frame_header(h, 0, 0x01020304);
  CHECK_EQ(h[0], 0);
  CHECK_EQ(h[1], 0x01);
  CHECK_EQ(h[2], 0x02);
  CHECK_EQ(h[3], 0x03);
  CHECK_EQ(h[4], 0x04);
  uvg__frame_header(h, 1, 0);
  CHECK_EQ(h[0], 1);
  CHECK_EQ(h[1] | h[2] | h[3] | h[4], 0);
  uvg__frame_header(h, 7, 0xffffffffu); /* any nonzero flag is 1 */
  CHECK_EQ(h[0], 1);
  CHECK_EQ(h[1] & h[2] & h[3] & h[4], 0xff);
  uvg__frame_header(h, 0, 300);
  CHECK_EQ(h[3], 1);
  CHECK_EQ(h[4], 44);
}

/* One message split in two at every byte boundary, including each point
 * inside the 5-byte prefix, then in three at every pair of boundaries. */
static void test_split_everywhere(void) {
  static const char text[] = "hello, length-prefixed world";
  const uint32_t len = (uint32_t)strlen(text);
  uint8_t buf[64];
  size_t total = frame(buf, 0, 0, text, len);
  int bad = 0;

  for (size_t cut = 0; cut <= total; cut++) {
    uvg__deframer_t d;
    sink_t s;
    sink_init(&s);
    uvg__deframer_init(&d, 1024);
    int rc1 = uvg__deframer_feed(&d, buf, cut, collect, &s);
    int n_mid = s.n;
    int partial_mid = uvg__deframer_partial(&d);
    int rc2 = uvg__deframer_feed(&d, buf + cut, total - cut, collect, &s);
    if (rc1 != 0 || rc2 != 0 || s.n != 1 || s.len[0] != len ||
        memcmp(s.msg[0], text, len) != 0 || s.compressed[0] != 0)
      bad++;
    /* Before the last byte the message is incomplete and partial. */
    if (cut < total && (n_mid != 0 || partial_mid != (cut > 0))) bad++;
    if (uvg__deframer_partial(&d)) bad++;
    sink_free(&s);
    uvg__deframer_free(&d);
  }
  CHECK_EQ(bad, 0);

  for (size_t a = 0; a <= total; a++)
    for (size_t b = a; b <= total; b++) {
      uvg__deframer_t d;
      sink_t s;
      sink_init(&s);
      uvg__deframer_init(&d, 1024);
      int rc = uvg__deframer_feed(&d, buf, a, collect, &s);
      rc |= uvg__deframer_feed(&d, buf + a, b - a, collect, &s);
      rc |= uvg__deframer_feed(&d, buf + b, total - b, collect, &s);
      if (rc != 0 || s.n != 1 || s.len[0] != len || memcmp(s.msg[0], text, len) != 0)
        bad++;
      sink_free(&s);
      uvg__deframer_free(&d);
    }
  CHECK_EQ(bad, 0);
}

/* Many messages, of many sizes including empty ones, in one buffer, then the
 * same stream fed one byte at a time. */
static void test_many_messages(void) {
  enum { N = 100 };
  static uint8_t buf[N * (UVG__FRAME_HEADER_LEN + 200)];
  uint8_t payload[200];
  size_t total = 0;
  for (int i = 0; i < 200; i++) payload[i] = (uint8_t)(255 - i);
  for (int i = 0; i < N; i++)
    total = frame(buf, total, i % 3 == 0, payload, (uint32_t)((i * 37) % 200));

  for (int bytewise = 0; bytewise < 2; bytewise++) {
    uvg__deframer_t d;
    sink_t s;
    sink_init(&s);
    uvg__deframer_init(&d, 4096);
    int rc = 0;
    if (bytewise) {
      for (size_t i = 0; i < total && rc == 0; i++)
        rc = uvg__deframer_feed(&d, buf + i, 1, collect, &s);
    } else {
      rc = uvg__deframer_feed(&d, buf, total, collect, &s);
    }
    CHECK_EQ(rc, 0);
    CHECK_EQ(s.n, N);
    int bad = 0;
    for (int i = 0; i < N && i < s.n; i++) {
      uint32_t want = (uint32_t)((i * 37) % 200);
      if (s.len[i] != want || s.compressed[i] != (i % 3 == 0)) bad++;
      if (want == 0 && s.msg[i] != NULL) bad++;
      if (want > 0 && (s.msg[i] == NULL || memcmp(s.msg[i], payload, want) != 0))
        bad++;
    }
    CHECK_EQ(bad, 0);
    CHECK_EQ(uvg__deframer_partial(&d), 0);
    sink_free(&s);
    uvg__deframer_free(&d);
  }
}

static void test_empty_messages(void) {
  uint8_t buf[3 * UVG__FRAME_HEADER_LEN];
  size_t total = 0;
  total = frame(buf, total, 0, NULL, 0);
  total = frame(buf, total, 1, NULL, 0);
  total = frame(buf, total, 0, NULL, 0);
  uvg__deframer_t d;
  sink_t s;
  sink_init(&s);
  uvg__deframer_init(&d, 0); /* max_len 0 still admits empty messages */
  CHECK_EQ(uvg__deframer_feed(&d, buf, total, collect, &s), 0);
  CHECK_EQ(s.n, 3);
  for (int i = 0; i < 3; i++) {
    CHECK(s.msg[i] == NULL);
    CHECK_EQ(s.len[i], 0);
  }
  CHECK_EQ(s.compressed[1], 1);
  CHECK_EQ(uvg__deframer_partial(&d), 0);
  /* An empty message completes with its prefix's last byte. */
  sink_free(&s);
  CHECK_EQ(uvg__deframer_feed(&d, buf, 4, collect, &s), 0);
  CHECK_EQ(s.n, 0);
  CHECK_EQ(uvg__deframer_partial(&d), 1);
  CHECK_EQ(uvg__deframer_feed(&d, buf + 4, 1, collect, &s), 0);
  CHECK_EQ(s.n, 1);
  CHECK_EQ(uvg__deframer_partial(&d), 0);
  sink_free(&s);
  uvg__deframer_free(&d);
}

static void test_compressed_flag(void) {
  uint8_t buf[32];
  size_t total = frame(buf, 0, 1, "zz", 2);
  total = frame(buf, total, 0, "pp", 2);
  uvg__deframer_t d;
  sink_t s;
  sink_init(&s);
  uvg__deframer_init(&d, 100);
  CHECK_EQ(uvg__deframer_feed(&d, buf, total, collect, &s), 0);
  CHECK_EQ(s.n, 2);
  CHECK_EQ(s.compressed[0], 1);
  CHECK_EQ(s.compressed[1], 0);
  CHECK(s.n == 2 && memcmp(s.msg[0], "zz", 2) == 0 && memcmp(s.msg[1], "pp", 2) == 0);
  sink_free(&s);
  uvg__deframer_free(&d);
}

static void test_too_large(void) {
  uint8_t buf[64];
  uint8_t payload[20] = {0};
  uvg__deframer_t d;
  sink_t s;

  /* Exactly max_len is accepted. */
  size_t total = frame(buf, 0, 0, payload, 10);
  sink_init(&s);
  uvg__deframer_init(&d, 10);
  CHECK_EQ(uvg__deframer_feed(&d, buf, total, collect, &s), 0);
  CHECK_EQ(s.n, 1);
  sink_free(&s);
  uvg__deframer_free(&d);

  /* One more is refused as soon as the prefix is complete, before any of
   * the message arrives. */
  total = frame(buf, 0, 0, payload, 11);
  sink_init(&s);
  uvg__deframer_init(&d, 10);
  CHECK_EQ(uvg__deframer_feed(&d, buf, 3, collect, &s), 0);
  CHECK_EQ(uvg__deframer_feed(&d, buf + 3, 2, collect, &s), UVG__E_TOO_LARGE);
  CHECK_EQ(s.n, 0);
  uvg__deframer_free(&d);

  /* A huge length is refused without allocating it. */
  uint8_t huge[UVG__FRAME_HEADER_LEN];
  uvg__frame_header(huge, 0, 0xffffffffu);
  uvg__deframer_init(&d, 4u << 20);
  CHECK_EQ(uvg__deframer_feed(&d, huge, sizeof(huge), collect, &s), UVG__E_TOO_LARGE);
  CHECK_EQ(s.n, 0);
  uvg__deframer_free(&d);

  /* A good message before the oversized one is still delivered. */
  total = frame(buf, 0, 0, "ok", 2);
  total = frame(buf, total, 0, payload, 20);
  uvg__deframer_init(&d, 10);
  CHECK_EQ(uvg__deframer_feed(&d, buf, total, collect, &s), UVG__E_TOO_LARGE);
  CHECK_EQ(s.n, 1);
  sink_free(&s);
  uvg__deframer_free(&d);
}

static void test_partial(void) {
  uint8_t buf[32];
  size_t total = frame(buf, 0, 0, "abcdef", 6);
  uvg__deframer_t d;
  sink_t s;
  sink_init(&s);
  uvg__deframer_init(&d, 100);
  CHECK_EQ(uvg__deframer_partial(&d), 0);
  CHECK_EQ(uvg__deframer_feed(&d, buf, 0, collect, &s), 0);
  CHECK_EQ(uvg__deframer_partial(&d), 0);
  CHECK_EQ(uvg__deframer_feed(&d, buf, 2, collect, &s), 0); /* in the prefix */
  CHECK_EQ(uvg__deframer_partial(&d), 1);
  CHECK_EQ(uvg__deframer_feed(&d, buf + 2, 3, collect, &s), 0); /* prefix done */
  CHECK_EQ(uvg__deframer_partial(&d), 1);
  CHECK_EQ(uvg__deframer_feed(&d, buf + 5, 4, collect, &s), 0); /* some body */
  CHECK_EQ(uvg__deframer_partial(&d), 1);
  CHECK_EQ(s.n, 0);
  CHECK_EQ(uvg__deframer_feed(&d, buf + 9, total - 9, collect, &s), 0);
  CHECK_EQ(uvg__deframer_partial(&d), 0);
  CHECK_EQ(s.n, 1);
  sink_free(&s);

  /* The stream ends mid-message: free releases the partial body. */
  CHECK_EQ(uvg__deframer_feed(&d, buf, 8, collect, &s), 0);
  CHECK_EQ(uvg__deframer_partial(&d), 1);
  uvg__deframer_free(&d);
  CHECK_EQ(uvg__deframer_partial(&d), 0);
  CHECK_EQ(s.n, 0);
}

static void test_callback_error_stops(void) {
  uint8_t buf[64];
  size_t total = 0;
  total = frame(buf, total, 0, "one", 3);
  total = frame(buf, total, 0, "two", 3);
  total = frame(buf, total, 0, "three", 5);
  uvg__deframer_t d;
  sink_t s;
  sink_init(&s);
  s.stop_at = 2;
  s.stop_rc = -77;
  uvg__deframer_init(&d, 100);
  CHECK_EQ(uvg__deframer_feed(&d, buf, total, collect, &s), -77);
  CHECK_EQ(s.n, 2); /* "three" was not delivered */
  CHECK(s.n == 2 && memcmp(s.msg[1], "two", 3) == 0);
  sink_free(&s);
  uvg__deframer_free(&d);

  /* The same with the message that fails arriving byte by byte. */
  sink_init(&s);
  s.stop_at = 1;
  s.stop_rc = UVG_ENOMEM;
  uvg__deframer_init(&d, 100);
  int rc = 0;
  size_t i;
  for (i = 0; i < total && rc == 0; i++)
    rc = uvg__deframer_feed(&d, buf + i, 1, collect, &s);
  CHECK_EQ(rc, UVG_ENOMEM);
  CHECK_EQ(i, 8); /* returned by the feed holding the last byte of "one" */
  CHECK_EQ(s.n, 1);
  sink_free(&s);
  uvg__deframer_free(&d);
}

/* A large message arriving in uneven chunks. */
static void test_large_message_chunks(void) {
  const uint32_t len = 300000;
  uint8_t *buf = malloc(len + UVG__FRAME_HEADER_LEN);
  uint8_t *payload = malloc(len);
  for (uint32_t i = 0; i < len; i++) payload[i] = (uint8_t)(i * 131 + 7);
  size_t total = frame(buf, 0, 0, payload, len);
  uvg__deframer_t d;
  sink_t s;
  sink_init(&s);
  uvg__deframer_init(&d, 4u << 20);
  size_t off = 0, chunk = 1;
  int rc = 0;
  while (off < total && rc == 0) {
    size_t n = chunk < total - off ? chunk : total - off;
    rc = uvg__deframer_feed(&d, buf + off, n, collect, &s);
    off += n;
    chunk = chunk * 3 + 1;
  }
  CHECK_EQ(rc, 0);
  CHECK_EQ(s.n, 1);
  CHECK(s.n == 1 && s.len[0] == len && memcmp(s.msg[0], payload, len) == 0);
  sink_free(&s);
  uvg__deframer_free(&d);
  free(buf);
  free(payload);
}

/* ---- memory follows the bytes received, not the length declared ---- */

/* An allocator that counts the bytes it has handed out and not taken back
 * (each block carries its size in front). */
static size_t live_bytes, max_live, n_allocs;
typedef union {
  size_t n;
  max_align_t align;
} block_head_t;

static void *count_malloc(size_t n) {
  block_head_t *h = malloc(sizeof(*h) + n);
  if (h == NULL) return NULL;
  h->n = n;
  live_bytes += n;
  if (live_bytes > max_live) max_live = live_bytes;
  n_allocs++;
  return h + 1;
}
static void *count_realloc(void *p, size_t n) {
  if (p == NULL) return count_malloc(n);
  block_head_t *h = (block_head_t *)p - 1;
  size_t old = h->n;
  h = realloc(h, sizeof(*h) + n);
  if (h == NULL) return NULL;
  live_bytes = live_bytes - old + n;
  if (live_bytes > max_live) max_live = live_bytes;
  h->n = n;
  n_allocs++;
  return h + 1;
}
static void count_free(void *p) {
  if (p == NULL) return;
  block_head_t *h = (block_head_t *)p - 1;
  live_bytes -= h->n;
  free(h);
}

static void counting_on(void) {
  live_bytes = max_live = n_allocs = 0;
  CHECK_EQ(uvg_set_allocator(count_malloc, count_realloc, count_free), 0);
}
static void counting_off(void) {
  CHECK_EQ(uvg_set_allocator(malloc, realloc, free), 0);
}

/* A prefix that declares the receive limit (4 MiB) reserves nothing; the
 * buffer then grows with the bytes that arrive, at most twice what arrived
 * (or 16 KiB), and the message comes out whole and right. */
static void test_memory_follows_bytes_received(void) {
  const uint32_t len = 4u << 20;
  uint8_t *buf = malloc(len + UVG__FRAME_HEADER_LEN);
  uint8_t *payload = malloc(len);
  for (uint32_t i = 0; i < len; i++) payload[i] = (uint8_t)(i * 7 + 3);
  size_t total = frame(buf, 0, 0, payload, len);
  uvg__deframer_t d;
  sink_t s;
  sink_init(&s);
  counting_on();
  uvg__deframer_init(&d, len);
  CHECK_EQ(uvg__deframer_feed(&d, buf, UVG__FRAME_HEADER_LEN, collect, &s), 0);
  CHECK_EQ(live_bytes, 0);
  CHECK_EQ(uvg__deframer_partial(&d), 1);
  size_t off = UVG__FRAME_HEADER_LEN, chunk = 1000, over = 0;
  int rc = 0;
  while (off < total && rc == 0) {
    size_t n = chunk < total - off ? chunk : total - off;
    rc = uvg__deframer_feed(&d, buf + off, n, collect, &s);
    off += n;
    size_t received = off - UVG__FRAME_HEADER_LEN;
    size_t allowed = 2 * received > 16384 ? 2 * received : 16384;
    if (s.n == 0 && live_bytes > allowed) over++;
    chunk = 16384;
  }
  CHECK_EQ(rc, 0);
  CHECK_EQ(over, 0);
  CHECK_EQ(s.n, 1);
  CHECK(s.n == 1 && s.len[0] == len && memcmp(s.msg[0], payload, len) == 0);
  /* the buffer was never larger than the message, and is gone with it */
  CHECK_EQ(max_live, len);
  CHECK_EQ(live_bytes, 0);
  sink_free(&s);

  /* The same prefix with nothing after it, then the stream ends: nothing
   * was held. */
  CHECK_EQ(uvg__deframer_feed(&d, buf, UVG__FRAME_HEADER_LEN, collect, &s), 0);
  CHECK_EQ(live_bytes, 0);
  uvg__deframer_free(&d);
  CHECK_EQ(live_bytes, 0);
  counting_off();
  free(buf);
  free(payload);
}

/* Feeds `total` bytes in pieces of `piece`; returns 0 or the first error. */
static int feed_pieces(uvg__deframer_t *d, const uint8_t *buf, size_t total,
                       size_t piece, uvg__deframe_cb cb, void *arg) {
  int rc = 0;
  for (size_t off = 0; off < total && rc == 0; off += piece)
    rc = uvg__deframer_feed(d, buf + off, total - off < piece ? total - off : piece,
                            cb, arg);
  return rc;
}

/* The end of a counted test: nothing may be left. */
static void counted_end(uvg__deframer_t *d, uint8_t *buf, uint8_t *payload) {
  CHECK_EQ(live_bytes, 0);
  uvg__deframer_free(d);
  counting_off();
  free(buf);
  free(payload);
}

/* A message that arrives whole is lent straight from the bytes fed: no
 * allocation, no copy. A small one in pieces is one allocation of its
 * exact size, released once the callback has had it. */
static void test_one_allocation_when_it_costs_nothing(void) {
  enum { BIG = 1 << 20, SMALL = 10000 };
  uint8_t *buf = malloc(BIG + UVG__FRAME_HEADER_LEN);
  uint8_t *payload = calloc(1, BIG);
  uvg__deframer_t d;
  sink_t s;

  size_t total = frame(buf, 0, 0, payload, BIG);
  sink_init(&s);
  counting_on();
  uvg__deframer_init(&d, BIG);
  CHECK_EQ(uvg__deframer_feed(&d, buf, total, collect, &s), 0);
  CHECK_EQ(s.n, 1);
  CHECK_EQ(n_allocs, 0);
  CHECK_EQ(live_bytes, 0);
  sink_free(&s);

  total = frame(buf, 0, 0, payload, SMALL);
  n_allocs = max_live = 0;
  CHECK_EQ(feed_pieces(&d, buf, total, 1000, collect, &s), 0);
  CHECK_EQ(s.n, 1);
  CHECK_EQ(n_allocs, 1);
  CHECK_EQ(max_live, SMALL);
  sink_free(&s);
  counted_end(&d, buf, payload);
}

/* Takes each assembled buffer instead of copying it. */
static uint8_t *taken[4];
static int ntaken, nlent;
static uvg__deframer_t *taking;

static int take(void *arg, int compressed, const uint8_t *msg, uint32_t len) {
  (void)arg;
  (void)compressed;
  (void)len;
  uint8_t *p = uvg__deframer_take(taking);
  if (p == NULL) {
    nlent++;
    return 0;
  }
  CHECK(p == msg);
  CHECK_EQ(uvg__deframer_take(taking), NULL); /* once */
  if (ntaken < 4) taken[ntaken++] = p;
  return 0;
}

/* A message that came in pieces can be taken, with no copy: its buffer
 * stays the taker's after the feed returns (ASan: no use after free),
 * and one that is not taken is freed as before; a message lent from the
 * bytes fed cannot be taken. */
static void test_an_assembled_message_is_taken_whole(void) {
  enum { BIG = 1 << 20 };
  uint8_t *buf = malloc(2 * (BIG + UVG__FRAME_HEADER_LEN));
  uint8_t *payload = malloc(BIG);
  for (uint32_t i = 0; i < BIG; i++) payload[i] = (uint8_t)(i * 13 + 1);
  size_t total = frame(buf, 0, 0, payload, BIG);
  total = frame(buf, total, 0, payload, BIG);
  uvg__deframer_t d;
  uvg__deframer_init(&d, BIG);
  taking = &d;
  ntaken = nlent = 0;
  counting_on();
  /* the first whole in one feed: lent; the second in pieces: taken */
  size_t first = BIG + UVG__FRAME_HEADER_LEN + 100;
  CHECK_EQ(uvg__deframer_feed(&d, buf, first, take, NULL), 0);
  CHECK_EQ(feed_pieces(&d, buf + first, total - first, 16384, take, NULL), 0);
  CHECK_EQ(nlent, 1);
  CHECK_EQ(ntaken, 1);
  CHECK(ntaken == 1 && memcmp(taken[0], payload, BIG) == 0);
  CHECK_EQ(live_bytes, BIG); /* the taker's now */
  uvg__free(taken[0]);
  CHECK_EQ(live_bytes, 0);
  /* outside a callback there is nothing to take */
  CHECK_EQ(uvg__deframer_take(&d), NULL);
  /* not taken: freed once the callback returns */
  sink_t s;
  sink_init(&s);
  CHECK_EQ(feed_pieces(&d, buf, BIG + UVG__FRAME_HEADER_LEN, 16384, collect, &s), 0);
  CHECK_EQ(s.n, 1);
  sink_free(&s);
  counted_end(&d, buf, payload);
}

int main(void) {
  RUN(test_frame_header_big_endian);
  RUN(test_split_everywhere);
  RUN(test_many_messages);
  RUN(test_empty_messages);
  RUN(test_compressed_flag);
  RUN(test_too_large);
  RUN(test_partial);
  RUN(test_callback_error_stops);
  RUN(test_large_message_chunks);
  RUN(test_memory_follows_bytes_received);
  RUN(test_one_allocation_when_it_costs_nothing);
  RUN(test_an_assembled_message_is_taken_whole);
  TEST_EXIT();
}
