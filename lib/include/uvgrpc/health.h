/*
 * uvgrpc/health.h: the gRPC health service, grpc.health.v1.Health
 * (grpc/grpc doc/health-checking.md), on a uvgrpc server.
 *
 * Check answers a service's status, or NOT_FOUND for a service it was never
 * told about; "" is the server as a whole. Watch sends the status at once
 * (SERVICE_UNKNOWN for an unknown service, and keeps watching) and again
 * at each change; a client that reads slowly gets the latest status, not
 * every one in between. When the server begins to shut down or close,
 * every status becomes NOT_SERVING, watchers are told so and their calls
 * end UNAVAILABLE, and later changes are refused: load balancers stop
 * sending before the connections go.
 *
 * Loop thread only, like everything in uvgrpc.h.
 */
#ifndef UVGRPC_HEALTH_H
#define UVGRPC_HEALTH_H

#include <uvgrpc.h>

#ifdef __cplusplus
extern "C" {
#endif

/* grpc.health.v1.HealthCheckResponse.ServingStatus, those a service has. */
typedef enum {
  UVG_HEALTH_UNKNOWN = 0,
  UVG_HEALTH_SERVING = 1,
  UVG_HEALTH_NOT_SERVING = 2
} uvg_health_status_t;

typedef struct uvg_health_s uvg_health_t;

/* Adds the health service to `server`, with "" (the whole server)
 * SERVING. The object belongs to the server: it is valid until the
 * server's close callback and freed with the server. Returns 0;
 * UVG_EINVAL; UVG_EEXIST (the server has a health service); UVG_ECLOSED;
 * UVG_ENOMEM. */
UVG_EXTERN int uvg_health_add(uvg_server_t *server, uvg_health_t **out);

/* Sets the status of `service` (a full service name, "" for the server;
 * copied) and tells its watchers if it changed. Returns 0; UVG_EINVAL
 * (NULL, or a status outside the enum); UVG_ECLOSED (the server is shutting
 * down: statuses stay NOT_SERVING); UVG_ENOMEM. */
UVG_EXTERN int uvg_health_set(uvg_health_t *health, const char *service,
                              uvg_health_status_t status);

/* Forgets `service`: Check answers NOT_FOUND again and watchers get
 * SERVICE_UNKNOWN. Returns 0, UVG_EINVAL or UVG_ECLOSED. */
UVG_EXTERN int uvg_health_clear(uvg_health_t *health, const char *service);

#ifdef __cplusplus
}
#endif
#endif /* UVGRPC_HEALTH_H */
