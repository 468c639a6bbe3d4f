// The one translation unit that instantiates Boost.Beast's server templates (they compile slowly).
#include "router/ingress/server.h"

#include <boost/asio/dispatch.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/write.hpp>
// GCC 12's -O2 sanitizer builds flag a boost::optional inside Beast's parser (put() and
// do_field() inlined into the session) as maybe-uninitialized; the warning is about library
// code, so it is silenced for Beast's headers only.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#pragma GCC diagnostic pop

#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <future>
#include <optional>
#include <thread>
#include <type_traits>
#include <vector>

#include "router/common/json.h"
#include "router/common/thread_name.h"

namespace dvrouter {

namespace net = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = net::ip::tcp;

namespace {
// Which I/O thread this is, so handlers can use per-thread state (one decoder per thread).
thread_local int t_io_thread = 0;
}  // namespace

// Connection timeouts without a timer operation per request. Each session keeps its deadline
// as a number (steady clock, ms) and sits in its context's DeadlineList; one timer per context
// is armed at the earliest deadline it knows of. Moving a deadline later (every request does)
// costs a store; only a deadline earlier than the armed one re-arms the timer. When the timer
// fires, the sweep expires the sessions whose deadline has passed and re-arms at the next one.
// Beast's basic_stream instead starts and cancels a timer wait around every read and write:
// with the composed read operations above it, that was a fifth of the I/O threads' CPU.
// Touched only on its context's thread (and at shutdown, after the threads are joined).
class Deadlined {
 public:
  static constexpr int64_t kNever = INT64_MAX;
  virtual ~Deadlined() = default;
  // Called by the sweep once the deadline has passed; the deadline is kNever by then.
  virtual void Expire() = 0;

 private:
  friend class DeadlineList;
  Deadlined* prev_ = nullptr;
  Deadlined* next_ = nullptr;

 protected:
  int64_t deadline_ms_ = kNever;
};

class DeadlineList {
 public:
  explicit DeadlineList(net::io_context& ctx) : timer_(std::in_place, ctx) {
    head_.prev_ = head_.next_ = &head_;
  }
  static int64_t NowMs() {
    return std::chrono::duration_cast<std::chrono::milliseconds>(
               std::chrono::steady_clock::now().time_since_epoch())
        .count();
  }
  void Add(Deadlined* d) {
    d->next_ = &head_;
    d->prev_ = head_.prev_;
    head_.prev_->next_ = d;
    head_.prev_ = d;
  }
  void Remove(Deadlined* d) {
    if (d->prev_ == nullptr) return;
    d->prev_->next_ = d->next_;
    d->next_->prev_ = d->prev_;
    d->prev_ = d->next_ = nullptr;
  }
  // `d`'s deadline was just set to `deadline_ms`. The timer fires on kTickMs boundaries, so
  // connections whose deadlines fall in one tick are expired by one sweep (a deadline passes up
  // to a tick late).
  void Changed(int64_t deadline_ms) {
    const int64_t at = RoundUp(deadline_ms);
    if (at < armed_ms_) Arm(at);
  }
  // Before the io_context goes: the timer belongs to it, the list outlives it (sessions that
  // the context destroys with its pending operations unlink themselves).
  void ReleaseTimer() { timer_.reset(); }

 private:
  void Arm(int64_t at_ms) {
    if (!timer_) return;
    armed_ms_ = at_ms;
    timer_->expires_at(std::chrono::steady_clock::time_point(std::chrono::milliseconds(at_ms)));
    timer_->async_wait([this, at_ms](boost::system::error_code ec) {
      if (ec || at_ms != armed_ms_) return;  // cancelled, or re-armed earlier since
      armed_ms_ = Deadlined::kNever;
      Sweep();
    });
  }
  static constexpr int64_t kTickMs = 20;
  static int64_t RoundUp(int64_t ms) {
    return ms >= Deadlined::kNever - kTickMs ? Deadlined::kNever
                                             : (ms + kTickMs - 1) / kTickMs * kTickMs;
  }
  void Sweep() {
    const int64_t now = NowMs();
    int64_t next = Deadlined::kNever;
    for (Deadlined* d = head_.next_; d != &head_;) {
      Deadlined* following = d->next_;  // Expire may not unlink, but be safe if it does
      if (d->deadline_ms_ <= now) {
        d->deadline_ms_ = Deadlined::kNever;
        d->Expire();
      } else if (d->deadline_ms_ < next) {
        next = d->deadline_ms_;
      }
      d = following;
    }
    Changed(next);
  }

  struct Head final : Deadlined {
    void Expire() override {}
  };
  Head head_;
  std::optional<net::steady_timer> timer_;
  int64_t armed_ms_ = Deadlined::kNever;
};

// One io_context per thread: a connection lives on one context for its whole life, so its
// handlers never contend for a shared scheduler lock and need no strand. Measured against one
// shared io_context with strands, this removed most of the futex wake-ups under load.
struct IoRuntime::Impl {
  explicit Impl(int n) : count(n) {
    for (int i = 0; i < n; ++i) {
      contexts.push_back(std::make_unique<net::io_context>(1));
      deadlines.push_back(std::make_unique<DeadlineList>(*contexts.back()));
    }
  }
  ~Impl() {
    work.clear();
    for (auto& d : deadlines) d->ReleaseTimer();
    contexts.clear();  // destroys pending operations, and the sessions they held
  }
  // The next context round robin, and its deadline list.
  std::pair<net::io_context*, DeadlineList*> Next() {
    const size_t i = next.fetch_add(1, std::memory_order_relaxed) % contexts.size();
    return {contexts[i].get(), deadlines[i].get()};
  }
  std::vector<std::unique_ptr<DeadlineList>> deadlines;  // declared first: outlives contexts
  std::vector<std::unique_ptr<net::io_context>> contexts;
  std::vector<net::executor_work_guard<net::io_context::executor_type>> work;
  std::vector<std::thread> threads;
  int count;
  std::atomic<size_t> next{0};
  std::atomic<bool> running{false};
};

IoRuntime::IoRuntime(int threads) : impl_(std::make_unique<Impl>(threads < 1 ? 1 : threads)) {}
IoRuntime::~IoRuntime() { Stop(); }
int IoRuntime::threads() const { return impl_->count; }

void IoRuntime::Start() {
  if (impl_->running.exchange(true)) return;
  for (int i = 0; i < impl_->count; ++i) {
    net::io_context& ctx = *impl_->contexts[static_cast<size_t>(i)];
    impl_->work.emplace_back(ctx.get_executor());
    impl_->threads.emplace_back([&ctx, i] {
      SetThreadName("dv-io-" + std::to_string(i));
      t_io_thread = i;
      ctx.run();
    });
  }
}

void IoRuntime::Stop() {
  impl_->work.clear();
  for (auto& ctx : impl_->contexts) ctx->stop();
  for (auto& t : impl_->threads) {
    if (t.joinable()) t.join();
  }
  impl_->threads.clear();
  impl_->running = false;
}

namespace {

class BeastHeaders final : public HeaderLookup {
 public:
  void Reset(const http::fields* fields) { fields_ = fields; }
  std::string_view get(std::string_view name) const override {
    auto it = fields_->find(beast::string_view(name.data(), name.size()));
    if (it == fields_->end()) return {};
    auto v = it->value();
    return {v.data(), v.size()};
  }
  bool has(std::string_view name) const override {
    return fields_->find(beast::string_view(name.data(), name.size())) != fields_->end();
  }

 private:
  const http::fields* fields_ = nullptr;
};

}  // namespace

// What sessions share with their server. It holds no I/O object, so sessions, which live on
// every I/O thread's context, never keep an object of another context alive: at shutdown each
// context destroys only its own.
struct SessionShared {
  SessionShared(HttpHandler* h, HttpServerLimits l) : handler(h), limits(l) {}
  HttpHandler* handler;
  const HttpServerLimits limits;
  std::unique_ptr<net::ssl::context> tls;  // set before Listen when the listener is HTTPS
  std::atomic<int64_t> connections{0};
  std::atomic<int64_t> in_flight{0};
};

// The listener: acceptor and retry timer on the first context; accepted sockets are handed to
// the next context round robin.
struct HttpServer::Impl : std::enable_shared_from_this<HttpServer::Impl> {
  Impl(IoRuntime::Impl* r, HttpHandler* h, HttpServerLimits l)
      : rt(r),
        shared(std::make_shared<SessionShared>(h, l)),
        acceptor(*r->contexts.front()),
        retry_timer(*r->contexts.front()) {}

  IoRuntime::Impl* rt;
  std::shared_ptr<SessionShared> shared;
  tcp::acceptor acceptor;
  net::steady_timer retry_timer;
  uint16_t bound_port = 0;

  void DoAccept();
  void OnAccept(beast::error_code ec, tcp::socket socket);
};

namespace {

// Connections use the io_context's concrete executor rather than Asio's type-erased
// any_io_executor: every handler hop then skips the erased executor's copies (about 8% of the
// CPU per request in a profile).
using Executor = net::io_context::executor_type;
using Socket = net::basic_stream_socket<tcp, Executor>;
using TlsStream = beast::ssl_stream<Socket>;

// Stream is Socket (HTTP) or TlsStream (HTTPS).
//
// The session drives Beast's request parser itself: it reads with the stream's async_read_some
// into a flat buffer and feeds the parser with put(). http::async_read would do the same through
// three nested composed operations (read, read_some, basic_stream's transfer), each holding work
// guards on the context and each read also starting a timer wait; the answer is formatted into
// one string and written with one async_write instead of Beast's serializer. Timeouts come from
// the context's DeadlineList.
template <typename Stream>
class Session final : public std::enable_shared_from_this<Session<Stream>>,
                      public HttpExchange,
                      public Deadlined {
  static constexpr bool kTls = std::is_same_v<Stream, TlsStream>;
  using std::enable_shared_from_this<Session<Stream>>::shared_from_this;

 public:
  Session(Socket&& socket, std::shared_ptr<SessionShared> server, DeadlineList* deadlines)
      : stream_(MakeStream(std::move(socket), *server)),
        server_(std::move(server)),
        deadlines_(deadlines) {
    state_ = server_->handler->NewConnection();
  }
  ~Session() override {
    deadlines_->Remove(this);
    server_->connections.fetch_sub(1, std::memory_order_relaxed);
  }

  // Takes the only reference: the accepting thread keeps none, so the session is destroyed on its
  // own context's thread, which owns its DeadlineList.
  static void Start(std::shared_ptr<Session> session) {
    auto executor = session->stream_.get_executor();
    net::dispatch(executor, [self = std::move(session)] {
      self->deadlines_->Add(self.get());
      if constexpr (kTls) {
        self->DoHandshake();
      } else {
        self->DoReadHeader();
      }
    });
  }

  // HttpExchange: any thread, once per handled request. The reference moves into the handler,
  // so the calling thread (the journal's, say) never holds the last one: the session is
  // destroyed on its own context's thread, which owns its DeadlineList.
  void Respond(HttpResponse response) override {
    auto executor = stream_.get_executor();
    net::dispatch(executor,
                  [self = std::move(self_while_handling_), r = std::move(response)]() mutable {
                    self->Write(std::move(r), /*handled=*/true);
                  });
  }

  // Deadlined: the current phase took too long. Closing the socket ends the pending operation,
  // whose handler sees timed_out_.
  void Expire() override {
    timed_out_ = true;
    CloseSocket();
  }

 private:
  static Stream MakeStream(Socket&& socket, SessionShared& shared) {
    if constexpr (kTls) {
      return Stream(std::move(socket), *shared.tls);
    } else {
      return std::move(socket);
    }
  }

  Socket& Tcp() { return beast::get_lowest_layer(stream_); }

  void ExpiresAfter(uint64_t ms) {
    deadline_ms_ = DeadlineList::NowMs() + static_cast<int64_t>(ms);
    deadlines_->Changed(deadline_ms_);
  }
  void ExpiresNever() { deadline_ms_ = kNever; }

  // HTTPS only: the handshake runs under the header timeout, so a client that connects and
  // says nothing is closed like any slow client.
  void DoHandshake() {
    if constexpr (kTls) {
      ExpiresAfter(server_->limits.header_timeout_ms);
      stream_.async_handshake(
          net::ssl::stream_base::server, [self = shared_from_this()](beast::error_code ec) {
            if (ec) {
              self->server_->handler->OnTransportReject(
                  self->timed_out_ ? TransportReject::kTimeout : TransportReject::kTlsHandshake);
              return self->Close();
            }
            self->DoReadHeader();
          });
    }
  }

  void DoReadHeader() {
    std::string recycled;
    if (parser_) recycled = std::move(parser_->get().body());
    parser_.emplace();
    parser_->eager(false);  // put() stops after the header: Precheck runs before the body
    parser_->body_limit(server_->limits.max_body_bytes);
    parser_->header_limit(static_cast<std::uint32_t>(server_->limits.max_header_bytes));
    // Keep the buffer's capacity for the next body, unless an unusually large one grew it: idle
    // keep-alive connections must not each hold up to max_body_bytes.
    if (recycled.capacity() > (256u << 10)) recycled = std::string();
    recycled.clear();
    parser_->get().body() = std::move(recycled);
    in_body_ = false;
    ExpiresAfter(server_->limits.header_timeout_ms);
    Parse();
  }

  // Feeds what the buffer holds to the parser; reads more while it needs more.
  void Parse() {
    for (;;) {
      if (in_body_ && parser_->is_done()) return OnBody();
      if (buffer_.size() == 0) break;
      beast::error_code ec;
      const size_t used = parser_->put(buffer_.data(), ec);
      buffer_.consume(used);
      if (ec == http::error::need_more) break;
      if (ec) return OnReadError(ec);
      if (!in_body_ && parser_->is_header_done()) return OnHeader();
      if (used == 0) break;
    }
    // What the parser leaves unconsumed in the body is a chunk-size line (with its extensions) or
    // the trailer, which Beast does not bound: past the header limit the request is refused, so a
    // session holds at most the header limit, one read and max_body_bytes (docs/operations.md,
    // "Security").
    if (in_body_ && buffer_.size() > server_->limits.max_header_bytes) return OnChunkLimit();
    ReadSome();
  }

  void OnChunkLimit() {
    server_->handler->OnTransportReject(TransportReject::kMalformed);
    HttpResponse r = ErrorResponse(
        431, "bad_request", "a chunk-size line or the trailer exceeds the header size limit");
    r.close = true;
    Write(std::move(r), /*handled=*/false);
  }

  void ReadSome() {
    // At least 16 KiB per read. Beast's read_size() offers the buffer's free capacity, 512 bytes
    // at first; the parser empties the buffer after every request, so it never grew, and a
    // 10 KB webhook took 20 recv calls (as it did under http::async_read too).
    static constexpr size_t kMinRead = 16 << 10;
    const size_t size = std::max(beast::read_size(buffer_, 65536), kMinRead);
    stream_.async_read_some(
        buffer_.prepare(size),
        [self = shared_from_this()](beast::error_code ec, size_t n) { self->OnRead(ec, n); });
  }

  void OnRead(beast::error_code ec, size_t n) {
    buffer_.commit(n);
    if (timed_out_) return OnReadError(beast::error::timeout);
    if (ec == net::error::eof && parser_->got_some()) {
      // The client closed mid-request: let the parser name it (partial message).
      ec = {};
      parser_->put_eof(ec);
      if (!ec && parser_->is_done()) return in_body_ ? OnBody() : OnHeader();
      if (!ec) ec = http::error::partial_message;
    } else if (ec == net::error::eof) {
      ec = http::error::end_of_stream;
    }
    if (ec) return OnReadError(ec);
    Parse();
  }

  void OnHeader() {
    in_body_ = true;
    parser_->eager(true);
    const auto& req = parser_->get();
    headers_.Reset(&req.base());
    HttpRequestView head;
    head.method = req.method_string();
    head.target = req.target();
    head.headers = &headers_;
    if (std::optional<HttpResponse> refusal = server_->handler->Precheck(head)) {
      // Refused before reading the body: answer, then close without reading it.
      refusal->close = true;
      return Write(std::move(*refusal), /*handled=*/false);
    }
    if (auto len = parser_->content_length()) {
      req_body().reserve(static_cast<size_t>(*len) + server_->limits.body_padding);
    }
    ExpiresAfter(server_->limits.body_timeout_ms);
    if (req.version() >= 11 && beast::iequals(req[http::field::expect], "100-continue") &&
        !parser_->is_done() && buffer_.size() == 0) {
      static constexpr char kContinue[] = "HTTP/1.1 100 Continue\r\n\r\n";
      net::async_write(stream_, net::buffer(kContinue, sizeof(kContinue) - 1),
                       [self = shared_from_this()](beast::error_code wec, std::size_t) {
                         if (wec || self->timed_out_) return self->Close();
                         self->Parse();
                       });
      return;
    }
    Parse();
  }

  void OnBody() {
    ExpiresNever();
    std::string& body = req_body();
    const size_t padding = server_->limits.body_padding;
    if (body.capacity() < body.size() + padding) body.reserve(body.size() + padding);
    const auto& req = parser_->get();
    headers_.Reset(&req.base());
    HttpRequestView view;
    auto method = req.method_string();
    auto target = req.target();
    view.method = std::string_view(method.data(), method.size());
    view.target = std::string_view(target.data(), target.size());
    view.headers = &headers_;
    view.body_data = body.data();
    view.body_size = body.size();
    view.body_capacity = body.capacity();
    server_->in_flight.fetch_add(1, std::memory_order_relaxed);
    self_while_handling_ = shared_from_this();
    server_->handler->Handle(view, state_.get(), this, t_io_thread);
  }

  void OnReadError(beast::error_code ec) {
    const bool started = in_body_ || parser_->got_some() || buffer_.size() > 0;
    if (ec == beast::error::timeout) {
      // An idle keep-alive connection timing out is normal; a half-sent request is a slow client.
      if (started) server_->handler->OnTransportReject(TransportReject::kTimeout);
      return Close();
    }
    if (ec == http::error::body_limit) {
      server_->handler->OnTransportReject(TransportReject::kTooLarge);
      HttpResponse r;
      r.status = 413;
      r.body = R"({"error":"too_large","message":"body exceeds ingress.max_body_bytes"})";
      r.close = true;
      return Write(std::move(r), /*handled=*/false);
    }
    // The client went away (possibly mid-body): nobody to answer.
    if (ec == http::error::end_of_stream || ec == http::error::partial_message ||
        ec == net::error::eof || ec == net::error::connection_reset ||
        ec == net::ssl::error::stream_truncated || ec == net::error::operation_aborted ||
        !started) {
      return Close();
    }
    server_->handler->OnTransportReject(TransportReject::kMalformed);
    HttpResponse r;
    r.status = ec == http::error::header_limit ? 431 : 400;
    r.body = R"({"error":"bad_request","message":)";
    AppendJsonString(&r.body, "malformed HTTP request: " + ec.message());
    r.body += "}";
    r.close = true;
    Write(std::move(r), /*handled=*/false);
  }

  void Write(HttpResponse r, bool handled) {
    handled_ = handled;
    keep_alive_ = !r.close && parser_->get().keep_alive();
    const bool head = parser_->is_header_done() && parser_->get().method() == http::verb::head;
    out_.clear();
    out_ += "HTTP/1.1 ";
    out_ += std::to_string(r.status);
    out_ += ' ';
    const auto reason = http::obsolete_reason(http::int_to_status(static_cast<unsigned>(r.status)));
    out_.append(reason.data(), reason.size());
    out_ += "\r\nServer: dvrouter\r\nContent-Type: ";
    out_ += r.content_type;
    if (r.retry_after_s > 0) {
      out_ += "\r\nRetry-After: ";
      out_ += std::to_string(r.retry_after_s);
    }
    if (!r.allow.empty()) {
      out_ += "\r\nAllow: ";
      out_ += r.allow;
    }
    for (const auto& [name, value] : r.headers) {
      // The framing is this function's: a handler's own length, encoding or connection field
      // would contradict it, and a line break in a value would start a header of its own.
      if (beast::iequals(name, "content-length") || beast::iequals(name, "transfer-encoding") ||
          beast::iequals(name, "connection") || name.find_first_of("\r\n:") != std::string::npos ||
          value.find_first_of("\r\n") != std::string::npos) {
        continue;
      }
      out_ += "\r\n";
      out_ += name;
      out_ += ": ";
      out_ += value;
    }
    out_ += "\r\nContent-Length: ";
    out_ += std::to_string(r.body.size());
    if (!keep_alive_) out_ += "\r\nConnection: close";
    out_ += "\r\n\r\n";
    out_body_ = std::move(r.body);
    if (head) out_body_.clear();  // a HEAD answer carries the length, not the body
    ExpiresAfter(server_->limits.body_timeout_ms);
    const std::array<net::const_buffer, 2> answer{net::buffer(out_), net::buffer(out_body_)};
    net::async_write(
        stream_, answer,
        [self = shared_from_this()](beast::error_code ec, std::size_t) { self->OnWrite(ec); });
  }

  void OnWrite(beast::error_code ec) {
    out_body_ = std::string();  // the handler's buffer (a /metrics page can be large)
    if (handled_) server_->in_flight.fetch_sub(1, std::memory_order_relaxed);
    handled_ = false;
    if (ec || timed_out_) return Close();
    if (!keep_alive_) return LingeringClose();
    DoReadHeader();
  }

  // Closing a socket with unread input makes the kernel send a reset, which can destroy the
  // answer (a 413, a 401) before the client reads it. Shut down our side, then discard what the
  // client still sends, bounded in bytes and time, before closing.
  void LingeringClose() {
    beast::error_code ignored;
    Tcp().shutdown(tcp::socket::shutdown_send, ignored);
    ExpiresAfter(2000);
    Drain(0);
  }

  void Drain(size_t drained) {
    static constexpr size_t kMaxDrain = 4 << 20;
    drain_buf_.resize(16 << 10);
    Tcp().async_read_some(net::buffer(drain_buf_),
                          [self = shared_from_this(), drained](beast::error_code ec, size_t n) {
                            if (ec || drained + n > kMaxDrain) return self->Close();
                            self->Drain(drained + n);
                          });
  }

  void Close() {
    ExpiresNever();
    CloseSocket();
  }
  void CloseSocket() {
    beast::error_code ignored;
    Tcp().shutdown(tcp::socket::shutdown_both, ignored);
    Tcp().close(ignored);
  }

  std::string& req_body() { return parser_->get().body(); }

  Stream stream_;
  beast::flat_buffer buffer_;
  std::optional<http::request_parser<http::string_body>> parser_;
  std::string out_;       // the answer's status line and header fields
  std::string out_body_;  // and its body, as the handler gave it
  std::shared_ptr<SessionShared> server_;
  DeadlineList* deadlines_;
  std::unique_ptr<HttpConnectionState> state_;
  std::shared_ptr<Session> self_while_handling_;
  BeastHeaders headers_;
  std::string drain_buf_;
  bool keep_alive_ = false;
  bool handled_ = false;
  bool in_body_ = false;    // the header was read and checked; reading the body
  bool timed_out_ = false;  // the deadline closed the socket
};

}  // namespace

void HttpServer::Impl::DoAccept() {
  acceptor.async_accept(beast::bind_front_handler(&Impl::OnAccept, shared_from_this()));
}

void HttpServer::Impl::OnAccept(beast::error_code ec, tcp::socket socket) {
  if (ec == net::error::operation_aborted || !acceptor.is_open()) return;
  if (ec) {
    // Out of descriptors or similar: back off briefly instead of spinning.
    retry_timer.expires_after(std::chrono::milliseconds(50));
    retry_timer.async_wait(net::bind_executor(acceptor.get_executor(),
                                              [self = shared_from_this()](beast::error_code wec) {
                                                if (!wec && self->acceptor.is_open())
                                                  self->DoAccept();
                                              }));
    return;
  }
  SessionShared& sh = *shared;
  if (sh.connections.fetch_add(1, std::memory_order_relaxed) >=
      static_cast<int64_t>(sh.limits.max_connections)) {
    sh.connections.fetch_sub(1, std::memory_order_relaxed);
    sh.handler->OnTransportReject(TransportReject::kConnectionLimit);
    beast::error_code ignored;
    socket.close(ignored);
  } else {
    // Move the connection to the next I/O thread's context, round robin, where it stays.
    const auto protocol = socket.local_endpoint(ec).protocol();
    const int fd = ec ? -1 : socket.release(ec);
    auto [ctx, deadlines] = rt->Next();
    Socket moved(ctx->get_executor());
    if (!ec) moved.assign(protocol, fd, ec);
    if (ec) {
      if (fd >= 0 && !moved.is_open()) ::close(fd);
      sh.connections.fetch_sub(1, std::memory_order_relaxed);
    } else {
      moved.set_option(tcp::no_delay(true), ec);
      if (sh.tls) {
        Session<TlsStream>::Start(
            std::make_shared<Session<TlsStream>>(std::move(moved), shared, deadlines));
      } else {
        Session<Socket>::Start(
            std::make_shared<Session<Socket>>(std::move(moved), shared, deadlines));
      }
    }
  }
  DoAccept();
}

HttpServer::HttpServer(IoRuntime* runtime, HttpHandler* handler, HttpServerLimits limits)
    : impl_(std::make_shared<Impl>(runtime->impl_.get(), handler, limits)) {}

HttpServer::~HttpServer() { StopAccepting(); }

Status HttpServer::EnableTls(const TlsConfig& tls) {
  auto ctx = std::make_unique<net::ssl::context>(net::ssl::context::tls_server);
  beast::error_code ec;
  // Old protocols off; TLS 1.2 is what Dataverse and every current client speak. No
  // renegotiation, whatever the host's OpenSSL configuration allows: a client renegotiating in
  // a loop makes the server do a handshake's work per request for little of its own.
  long options = SSL_OP_NO_SSLv2 | SSL_OP_NO_SSLv3 | SSL_OP_NO_TLSv1 | SSL_OP_NO_TLSv1_1 |
                 SSL_OP_NO_COMPRESSION | SSL_OP_CIPHER_SERVER_PREFERENCE | SSL_OP_NO_RENEGOTIATION;
  if (tls.min_version == "1.3") options |= SSL_OP_NO_TLSv1_2;
  SSL_CTX_set_options(ctx->native_handle(), static_cast<uint64_t>(options));
  ctx->use_certificate_chain_file(tls.cert_file, ec);
  if (ec) return InvalidArgument("ingress.tls.cert_file: " + tls.cert_file + ": " + ec.message());
  ctx->use_private_key_file(tls.key_file, net::ssl::context::pem, ec);
  if (ec) return InvalidArgument("ingress.tls.key_file: " + tls.key_file + ": " + ec.message());
  if (SSL_CTX_check_private_key(ctx->native_handle()) != 1) {
    return InvalidArgument("ingress.tls.key_file: the key does not match the certificate");
  }
  impl_->shared->tls = std::move(ctx);
  return Status::Ok();
}

Status HttpServer::Listen(const Endpoint& endpoint) {
  beast::error_code ec;
  auto address = net::ip::make_address(endpoint.host, ec);
  if (ec) return InvalidArgument("cannot listen on " + endpoint.ToString() + ": bad address");
  tcp::endpoint ep(address, endpoint.port);
  auto& a = impl_->acceptor;
  a.open(ep.protocol(), ec);
  if (!ec) a.set_option(net::socket_base::reuse_address(true), ec);
  if (!ec) a.bind(ep, ec);
  if (!ec) a.listen(net::socket_base::max_listen_connections, ec);
  if (ec) {
    beast::error_code ignored;
    a.close(ignored);
    return Unavailable("cannot listen on " + endpoint.ToString() + ": " + ec.message());
  }
  impl_->bound_port = a.local_endpoint().port();
  net::post(a.get_executor(), [impl = impl_] { impl->DoAccept(); });
  return Status::Ok();
}

uint16_t HttpServer::port() const { return impl_->bound_port; }
int64_t HttpServer::in_flight() const { return impl_->shared->in_flight.load(); }
int64_t HttpServer::connections() const { return impl_->shared->connections.load(); }

void HttpServer::StopAccepting() {
  auto impl = impl_;
  auto close = [impl] {
    beast::error_code ignored;
    impl->acceptor.close(ignored);
    impl->retry_timer.cancel();
  };
  if (!impl->rt->running.load() || impl->rt->contexts.front()->stopped()) {
    close();
    return;
  }
  std::promise<void> done;
  auto fut = done.get_future();
  net::post(impl->acceptor.get_executor(), [close, &done] {
    close();
    done.set_value();
  });
  fut.wait();
}

}  // namespace dvrouter
