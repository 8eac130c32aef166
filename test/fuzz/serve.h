/* The server target's run, shared with the TLS target: serves one
 * connection whose peer sends `data`, through TLS with `tls` (NULL:
 * plaintext). `peer_start` (NULL: send `data` at once) takes over the
 * peer's end of the connection, `fd`, and must end, on the loop, in
 * fz_peer_open(p, loop, fd, p->in.base, p->in.len, p->on_closed) (p's data,
 * in and on_closed are set). */
#ifndef UVG_FUZZ_SERVE_H
#define UVG_FUZZ_SERVE_H

#include "peer.h"
#include "tls/tls.h"

typedef void (*fz_peer_start_cb)(uv_loop_t *loop, int fd, fz_peer_t *p);
int fz_serve(const uint8_t *data, size_t size, uvg__tls_config_t *tls,
             fz_peer_start_cb peer_start);

/* The client target's run, likewise: a channel with `creds` (NULL:
 * insecure) makes its calls to a server whose connection `peer_start`
 * (NULL: send `data` at once) takes over. */
int fz_call(const uint8_t *data, size_t size, uvg_channel_credentials_t *creds,
            fz_peer_start_cb peer_start);

#endif
