/* Every generated header of the test protos, for the C++ compile check. */
#include "google/protobuf/empty.uvgrpc.h"
#include "imports/common.uvgrpc.h"
#include "imports/ext.uvgrpc.h"
#include "keywords.uvgrpc.h"
#include "nopkg.uvgrpc.h"
#include "same/one.uvgrpc.h"
#include "same/two.uvgrpc.h"
#include "uvg/test/v1/kinds.uvgrpc.h"
