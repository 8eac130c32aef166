/*
 * uvgrpc/reflection.h: gRPC server reflection (gRFC A15),
 * grpc.reflection.v1.ServerReflection and its older name
 * grpc.reflection.v1alpha.ServerReflection, so that tools such as grpcurl
 * can list a server's services and call them without the .proto files.
 *
 * What it knows is what the generated code embeds: every service added
 * with uvg_server_add_service() (a generated `..._register()`), before or
 * after this call, with its .proto file and every file that imports
 * reach. Methods registered with uvg_server_register() carry no
 * descriptors and are not listed. It answers list_services,
 * file_by_filename, file_containing_symbol (messages, enums, services,
 * methods, extensions), file_containing_extension and
 * all_extension_numbers_of_type; a file comes with the files it imports,
 * transitively. Not found is an error_response with NOT_FOUND.
 */
#ifndef UVGRPC_REFLECTION_H
#define UVGRPC_REFLECTION_H

#include <uvgrpc.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Adds both reflection services to `server`. Returns 0 or what
 * uvg_server_add_service() returns (UVG_EEXIST if they are there). */
UVG_EXTERN int uvg_reflection_add(uvg_server_t *server);

#ifdef __cplusplus
}
#endif
#endif /* UVGRPC_REFLECTION_H */
