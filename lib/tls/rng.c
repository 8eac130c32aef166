/*
 * The random generator behind every handshake: one CTR_DRBG for the
 * process, seeded from the kernel (mbedtls's entropy source: getrandom)
 * when TLS is first used. Loops on several threads share it behind a
 * mutex. A forked child starts with its parent's generator state, so it
 * would hand out the very bytes the parent hands out (the same ECDHE keys,
 * the same nonces): it reseeds from the kernel before its first byte. The
 * fork handlers mark the child; the pid check also catches a child made
 * without them (a raw clone()).
 */
#include <mbedtls/ctr_drbg.h>
#include <mbedtls/entropy.h>
#include <pthread.h>
#include <string.h>
#include <unistd.h>

#include "tls.h"

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_once_t once = PTHREAD_ONCE_INIT;
static mbedtls_entropy_context entropy;
static mbedtls_ctr_drbg_context drbg;
static int seeded;
static int forked;  /* set in a child by the fork handler */
static pid_t owner; /* the process the generator was last seeded in */

/* The lock is held across fork(), so that no other thread of the parent
 * can be inside the generator when the child's copy of it is made. */
static void before_fork(void) {
  pthread_mutex_lock(&lock);
}
static void after_fork_parent(void) {
  pthread_mutex_unlock(&lock);
}
static void after_fork_child(void) {
  forked = 1;
  pthread_mutex_unlock(&lock);
}

static void init_once(void) {
  mbedtls_entropy_init(&entropy);
  mbedtls_ctr_drbg_init(&drbg);
  pthread_atfork(before_fork, after_fork_parent, after_fork_child);
}

/* With the lock held. The pid goes in as personalization: even a child
 * whose kernel entropy somehow matched its parent's gets its own stream. */
static int ensure_seeded(void) {
  pid_t pid = getpid();
  int rc = 0;
  if (!seeded) {
    static const char label[] = "uvgrpc tls";
    unsigned char pers[sizeof(label) + sizeof(pid)];
    memcpy(pers, label, sizeof(label));
    memcpy(pers + sizeof(label), &pid, sizeof(pid));
    rc = mbedtls_ctr_drbg_seed(&drbg, mbedtls_entropy_func, &entropy, pers,
                               sizeof(pers));
    seeded = rc == 0;
  } else if (forked || owner != pid) {
    rc = mbedtls_ctr_drbg_reseed(&drbg, (const unsigned char *)&pid,
                                 sizeof(pid));
  }
  if (rc == 0) {
    forked = 0;
    owner = pid;
  }
  return rc;
}

int uvg__tls_random(void *unused, unsigned char *out, size_t len) {
  (void)unused;
  pthread_once(&once, init_once);
  pthread_mutex_lock(&lock);
  int rc = ensure_seeded();
  /* one request gives at most MBEDTLS_CTR_DRBG_MAX_REQUEST bytes */
  while (rc == 0 && len > 0) {
    size_t n =
        len < MBEDTLS_CTR_DRBG_MAX_REQUEST ? len : MBEDTLS_CTR_DRBG_MAX_REQUEST;
    rc = mbedtls_ctr_drbg_random(&drbg, out, n);
    out += n;
    len -= n;
  }
  pthread_mutex_unlock(&lock);
  return rc;
}
