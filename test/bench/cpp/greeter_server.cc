// gRPC C++ greeter for the benchmark: "Hello " + name on 127.0.0.1 only.
//
//   greeter_server_cpp [--port N] [--sync] [--tls --cert PEM --key PEM]
//
// Callback (reactor) API by default, the one gRPC recommends and the faster
// of the two standard servers here; --sync selects the synchronous API.
// Prints "listening on port N" and shuts down on SIGTERM/SIGINT. Also serves
// /bench.Echo/Echo for test/bench/stream_run.sh: a bidi stream that sends
// each message back as it came, through the callback generic service.
#include <grpcpp/generic/async_generic_service.h>
#include <grpcpp/grpcpp.h>
#include <signal.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <thread>

#include "helloworld.grpc.pb.h"

using helloworld::Greeter;
using helloworld::HelloReply;
using helloworld::HelloRequest;

class CallbackGreeter final : public Greeter::CallbackService {
  grpc::ServerUnaryReactor* SayHello(grpc::CallbackServerContext* ctx,
                                     const HelloRequest* req,
                                     HelloReply* reply) override {
    reply->set_message("Hello " + req->name());
    auto* reactor = ctx->DefaultReactor();
    reactor->Finish(grpc::Status::OK);
    return reactor;
  }
};

class SyncGreeter final : public Greeter::Service {
  grpc::Status SayHello(grpc::ServerContext*, const HelloRequest* req,
                        HelloReply* reply) override {
    reply->set_message("Hello " + req->name());
    return grpc::Status::OK;
  }
};

// One read, then its echo, then the next read: the reactor holds one
// message at a time, as gRPC's callback API allows one write in flight.
class EchoReactor final : public grpc::ServerGenericBidiReactor {
 public:
  explicit EchoReactor(bool known) {
    if (!known) {
      Finish(grpc::Status(grpc::StatusCode::UNIMPLEMENTED, "unknown method"));
      return;
    }
    StartRead(&buf_);
  }
  void OnReadDone(bool ok) override {
    if (!ok) {
      Finish(grpc::Status::OK);
      return;
    }
    StartWrite(&buf_);
  }
  void OnWriteDone(bool ok) override {
    if (!ok) {
      Finish(grpc::Status(grpc::StatusCode::UNAVAILABLE, "write failed"));
      return;
    }
    buf_.Clear();
    StartRead(&buf_);
  }
  void OnDone() override { delete this; }

 private:
  grpc::ByteBuffer buf_;
};

class EchoService final : public grpc::CallbackGenericService {
  grpc::ServerGenericBidiReactor* CreateReactor(
      grpc::GenericCallbackServerContext* ctx) override {
    return new EchoReactor(ctx->method() == "/bench.Echo/Echo");
  }
};

static std::string slurp(const char* path) {
  std::ifstream f(path);
  std::stringstream s;
  s << f.rdbuf();
  return s.str();
}

int main(int argc, char** argv) {
  std::string port = "0";
  bool sync = false, tls = false;
  const char *cert = nullptr, *key = nullptr;
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--port") && i + 1 < argc)
      port = argv[++i];
    else if (!strcmp(argv[i], "--sync"))
      sync = true;
    else if (!strcmp(argv[i], "--tls"))
      tls = true;
    else if (!strcmp(argv[i], "--cert") && i + 1 < argc)
      cert = argv[++i];
    else if (!strcmp(argv[i], "--key") && i + 1 < argc)
      key = argv[++i];
    else {
      fprintf(stderr, "usage: %s [--port N] [--sync] [--tls --cert PEM --key PEM]\n",
              argv[0]);
      return 2;
    }
  }
  std::shared_ptr<grpc::ServerCredentials> creds = grpc::InsecureServerCredentials();
  if (tls) {
    if (cert == nullptr || key == nullptr) {
      fprintf(stderr, "greeter_server_cpp: --tls needs --cert and --key\n");
      return 2;
    }
    grpc::SslServerCredentialsOptions o;
    o.pem_key_cert_pairs.push_back({slurp(key), slurp(cert)});
    creds = grpc::SslServerCredentials(o);
  }
  // Block the stop signals before gRPC starts its threads so that only the
  // sigwait below receives them.
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);

  CallbackGreeter cb;
  SyncGreeter sy;
  EchoService echo;
  int bound = 0;
  grpc::ServerBuilder builder;
  builder.AddListeningPort("127.0.0.1:" + port, creds, &bound);
  if (sync)
    builder.RegisterService(&sy);
  else
    builder.RegisterService(&cb);
  builder.RegisterCallbackGenericService(&echo);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (!server || bound == 0) {
    fprintf(stderr, "greeter_server_cpp: cannot listen on 127.0.0.1:%s\n",
            port.c_str());
    return 1;
  }
  printf("listening on port %d\n", bound);
  fflush(stdout);
  int sig;
  sigwait(&set, &sig);
  server->Shutdown();
  return 0;
}
