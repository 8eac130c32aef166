/* The protoc plugin (codegen/): a CodeGeneratorRequest as protoc would
 * write it on the plugin's stdin, unpacked with protobuf-c, checked, and
 * every file it asks for generated, as main() does short of running
 * protoc-gen-c and writing the response. Every generated file must have a
 * name and content. */
#include <stdint.h>
#include <stdlib.h>

#include "plugin.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  Google__Protobuf__Compiler__CodeGeneratorRequest *req =
      google__protobuf__compiler__code_generator_request__unpack(NULL, size,
                                                                 data);
  if (req == NULL) return 0;
  gen_t g = {0};
  g.req = req;
  if (check_request(&g) == NULL) {
    options_t opts;
    generate_files(&g, &opts);
    if (g.error == NULL) {
      for (size_t i = 0; i < g.nfiles; i++)
        if (g.files[i].name == NULL || g.files[i].content.s == NULL) abort();
    }
  }
  gen_free(&g);
  google__protobuf__compiler__code_generator_request__free_unpacked(req, NULL);
  pool_free();
  return 0;
}
