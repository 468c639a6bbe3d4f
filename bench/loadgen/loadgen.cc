// dvrouter-loadgen: posts real Dataverse webhook bodies to a URL and reports throughput and
// latency percentiles.
//
// Bodies are the fixtures (or --body files) with their OperationId and PrimaryEntityId varied per
// request, so every request is a distinct event on one of --records rows (a --hot-share of them
// on --hot-records hot rows); --duplicates resends earlier events. With --vary all (the default)
// every other GUID and every run of 10 or more digits (timestamps, ticks) differs per request too,
// as real bodies' do; --vary ids changes only the two ids. Open loop (--rate R): request
// i is due at start + i/R and its latency is measured from that due time, so a stalled server
// shows up in the percentiles instead of silently slowing the sender (no coordinated omission).
// Closed loop (--rate 0): each connection sends as fast as answers come back. Non-blocking
// sockets driven by epoll, --threads threads (default 1) sharing the connections, so the load
// generator costs the machine few context switches; only loopback or addresses you give it.
#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <deque>
#include <fstream>
#include <map>
#include <memory>
#include <sstream>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "bench/body_variation.h"
#include "bench/loadgen/histogram.h"

namespace dvrouter::bench {
namespace {

using Clock = std::chrono::steady_clock;

struct Options {
  std::string url = "http://127.0.0.1:8080/webhooks/dataverse";
  double rate = 0;  // requests/s; 0 = closed loop
  double duration_s = 10;
  uint64_t requests = 0;  // 0 = until duration
  int connections = 16;
  int threads = 1;
  std::vector<std::string> bodies;
  uint64_t records = 100'000;
  double hot_share = 0.0;
  uint64_t hot_records = 100;
  double duplicate_share = 0.0;
  std::vector<std::string> headers;
  int timeout_ms = 60'000;
  std::string json_path;
  std::string acked_path;  // the event id of every 2xx answer, one a line
  uint64_t seed = 1;
  std::string vary = "all";  // "ids": only the operation and row ids differ between requests
};

struct Target {
  std::string host;
  uint16_t port = 80;
  std::string path;  // with query
};

bool ParseUrl(const std::string& url, Target* t) {
  const std::string prefix = "http://";
  if (url.rfind(prefix, 0) != 0) return false;
  std::string rest = url.substr(prefix.size());
  size_t slash = rest.find('/');
  std::string hostport = rest.substr(0, slash);
  t->path = slash == std::string::npos ? "/" : rest.substr(slash);
  size_t colon = hostport.rfind(':');
  t->host = hostport.substr(0, colon);
  if (colon != std::string::npos) {
    int port = std::atoi(hostport.c_str() + colon + 1);
    if (port <= 0 || port > 65535) return false;
    t->port = static_cast<uint16_t>(port);
  }
  return !t->host.empty();
}

// 36 characters: xxxxxxxx-xxxx-4000-8000-xxxxxxxxxxxx (no snprintf: this runs per request).
void WriteGuid(uint64_t kind, uint64_t n, char* out) {
  WriteHex(Mix(kind) & 0xffffffffu, 8, out);
  out[8] = '-';
  WriteHex(kind & 0xffff, 4, out + 9);
  std::memcpy(out + 13, "-4000-8000-", 11);
  WriteHex(n & 0xffffffffffffull, 12, out + 24);
}

// A body with the positions of every copy of its operation id and row id, and of the other GUIDs
// and long digit runs (--vary all).
struct BodyTemplate {
  std::string text;
  std::vector<size_t> op_at, row_at;
  BodyVariation others;  // the other GUIDs and long numbers
};

std::string TopLevelGuid(const std::string& body, const std::string& key) {
  // The first occurrence after the key at nesting depth 1 is enough for Dataverse bodies, whose
  // top-level keys come after ParentContext's in alphabetical order only for nested copies that
  // carry the same value anyway.
  size_t at = body.rfind("\"" + key + "\"");
  if (at == std::string::npos) return "";
  size_t q = body.find('"', body.find(':', at) + 1);
  if (q == std::string::npos || q + 37 > body.size()) return "";
  return body.substr(q + 1, 36);
}

bool LoadTemplate(const std::string& path, BodyTemplate* t, std::string* err) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    *err = "cannot read " + path;
    return false;
  }
  std::stringstream ss;
  ss << in.rdbuf();
  t->text = ss.str();
  const std::string op = TopLevelGuid(t->text, "OperationId");
  const std::string row = TopLevelGuid(t->text, "PrimaryEntityId");
  if (op.size() != 36 || row.size() != 36) {
    *err = path + ": no OperationId/PrimaryEntityId GUIDs to vary";
    return false;
  }
  for (size_t at = t->text.find(op); at != std::string::npos; at = t->text.find(op, at + 36)) {
    t->op_at.push_back(at);
  }
  if (row != "00000000-0000-0000-0000-000000000000") {
    for (size_t at = t->text.find(row); at != std::string::npos; at = t->text.find(row, at + 36)) {
      t->row_at.push_back(at);
    }
  }
  std::vector<size_t> ids = t->op_at;
  ids.insert(ids.end(), t->row_at.begin(), t->row_at.end());
  t->others = BodyVariation::Find(t->text, ids);
  return true;
}

struct Workload {
  const Options* opt;
  std::vector<BodyTemplate> templates;
  std::string header_block;  // request line and headers up to Content-Length

  // Request i's event number: a fresh one, or an earlier one when it is a duplicate.
  uint64_t EventFor(uint64_t i) const {
    if (i > 0 &&
        static_cast<double>(Mix(i ^ opt->seed) % 1'000'000) < opt->duplicate_share * 1'000'000) {
      return Mix(i * 31 + opt->seed) % i;
    }
    return i;
  }
  uint64_t RecordFor(uint64_t event) const {
    const uint64_t h = Mix(event * 7 + opt->seed);
    const uint64_t hot = std::min(opt->hot_records, opt->records);
    if (hot > 0 && static_cast<double>(h % 1'000'000) < opt->hot_share * 1'000'000) {
      return Mix(h) % hot;
    }
    return hot + Mix(h + 1) % std::max<uint64_t>(1, opt->records - hot);
  }
  const BodyTemplate& Build(uint64_t event, std::string* body) const {
    const BodyTemplate& t = templates[event % templates.size()];
    body->assign(t.text);
    for (size_t at : t.op_at) WriteGuid(opt->seed, event, body->data() + at);
    const uint64_t record = RecordFor(event);
    for (size_t at : t.row_at) WriteGuid(0xfeed, record, body->data() + at);
    if (opt->vary == "all") t.others.Apply(event ^ (opt->seed << 32), body);
    return t;
  }
};

struct ThreadStats {
  LatencyHistogram latency;
  std::map<int, uint64_t> by_status;  // 0: connection error or timeout
  uint64_t duplicates = 0;
  uint64_t sent = 0;
  std::vector<std::string> acked;  // event ids of 2xx answers, with --acked
};

// One keep-alive connection, driven by its thread's epoll loop. A request is written with
// writev (head and body), its answer parsed by Content-Length; "Connection: close" or any
// error closes the socket, and the next request on this slot reconnects.
struct Connection {
  int fd = -1;
  bool connecting = false;
  bool busy = false;
  bool want_write = false;
  uint64_t index = 0;
  Clock::time_point due, sent;
  std::string head, body;
  size_t written = 0;
  std::string in;
};

class Worker {
 public:
  Worker(const Options& opt, const Target& target, const Workload& w, const std::string& extra,
         const sockaddr_storage& addr, socklen_t addr_len, int id, int threads, int connections,
         Clock::time_point start, Clock::time_point deadline, std::atomic<uint64_t>* next)
      : opt_(opt),
        target_(target),
        w_(w),
        extra_(extra),
        addr_(addr),
        addr_len_(addr_len),
        threads_(threads),
        conns_(static_cast<size_t>(connections)),
        start_(start),
        deadline_(deadline),
        next_(next),
        next_open_(static_cast<uint64_t>(id)) {}
  ~Worker() {
    for (auto& c : conns_) CloseConn(c);
    if (ep_ >= 0) ::close(ep_);
  }

  ThreadStats& stats() { return s_; }

  void Run() {
    ep_ = ::epoll_create1(EPOLL_CLOEXEC);
    if (ep_ < 0) {
      std::perror("loadgen: epoll_create1");
      return;
    }
    for (size_t i = 0; i < conns_.size(); ++i) idle_.push_back(i);
    const bool open = opt_.rate > 0;
    const double interval_ns = open ? 1e9 / opt_.rate : 0;
    epoll_event events[256];
    auto last_scan = Clock::now();
    for (;;) {
      auto now = Clock::now();
      if (open) {
        // Request i is due at start + i/rate; this thread takes every threads-th one.
        for (;;) {
          if (opt_.requests > 0 && next_open_ >= opt_.requests) break;
          const auto due = start_ + std::chrono::nanoseconds(static_cast<int64_t>(
                                        interval_ns * static_cast<double>(next_open_)));
          if (due >= deadline_) {
            open_done_ = true;
            break;
          }
          if (due > now) {
            next_due_ = due;
            break;
          }
          waiting_.push_back({next_open_, due});
          next_open_ += static_cast<uint64_t>(threads_);
        }
        if (opt_.requests > 0 && next_open_ >= opt_.requests) open_done_ = true;
        while (!waiting_.empty() && !idle_.empty()) {
          const auto [index, due] = waiting_.front();
          waiting_.pop_front();
          Start(TakeIdle(), index, due);
        }
      } else {
        while (!closed_done_ && !idle_.empty()) {
          if (now >= deadline_) {
            closed_done_ = true;
            break;
          }
          const uint64_t i = next_->fetch_add(1);
          if (opt_.requests > 0 && i >= opt_.requests) {
            closed_done_ = true;
            break;
          }
          Start(TakeIdle(), i, now);
          now = Clock::now();
        }
      }
      const bool done_scheduling = open ? open_done_ && waiting_.empty() : closed_done_;
      if (done_scheduling && idle_.size() == conns_.size()) break;

      int wait_ms = 50;
      if (open && !open_done_) {
        const auto until = std::chrono::ceil<std::chrono::milliseconds>(next_due_ - now).count();
        wait_ms = static_cast<int>(std::clamp<int64_t>(until, 0, 50));
      } else if (!open && !closed_done_ && !idle_.empty()) {
        wait_ms = 0;
      }
      const int n = ::epoll_wait(ep_, events, 256, wait_ms);
      if (n < 0 && errno != EINTR) {
        std::perror("loadgen: epoll_wait");
        return;
      }
      for (int k = 0; k < n; ++k) {
        Connection& c = conns_[events[k].data.u32];
        if (!c.busy) {
          // An idle keep-alive connection the server closed (its idle timeout) or wrote to:
          // level-triggered epoll would report it on every wait, and the next request would
          // be written into a dead socket. The next request on this slot connects afresh.
          CloseConn(c);
          continue;
        }
        if (events[k].events & (EPOLLOUT | EPOLLERR | EPOLLHUP)) {
          if (c.connecting) {
            int err = 0;
            socklen_t len = sizeof(err);
            ::getsockopt(c.fd, SOL_SOCKET, SO_ERROR, &err, &len);
            if (err != 0) {
              Finish(c, 0, false);
              continue;
            }
            c.connecting = false;
          }
          if (c.written < c.head.size() + c.body.size() && !Write(c)) continue;
        }
        if (events[k].events & (EPOLLIN | EPOLLERR | EPOLLHUP)) Read(c);
      }
      now = Clock::now();
      if (now - last_scan >= std::chrono::milliseconds(20)) {
        last_scan = now;
        for (auto& c : conns_) {
          if (c.busy && now - c.sent > std::chrono::milliseconds(opt_.timeout_ms)) {
            Finish(c, 0, false);
          }
        }
      }
    }
  }

 private:
  size_t TakeIdle() {
    const size_t i = idle_.back();
    idle_.pop_back();
    return i;
  }

  void Start(size_t slot, uint64_t index, Clock::time_point due) {
    Connection& c = conns_[slot];
    c.busy = true;
    c.index = index;
    c.due = due;
    c.sent = Clock::now();
    w_.Build(w_.EventFor(index), &c.body);
    c.head = "POST " + target_.path + " HTTP/1.1\r\nHost: " + target_.host +
             "\r\nContent-Type: application/json\r\n" + extra_ +
             "Content-Length: " + std::to_string(c.body.size()) + "\r\n\r\n";
    c.written = 0;
    if (c.fd < 0) {
      c.fd = ::socket(addr_.ss_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
      if (c.fd < 0) {
        Finish(c, 0, false);
        return;
      }
      int one = 1;
      ::setsockopt(c.fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
      epoll_event ev{};
      ev.events = EPOLLIN | EPOLLOUT;
      ev.data.u32 = static_cast<uint32_t>(slot);
      c.want_write = true;
      if (::epoll_ctl(ep_, EPOLL_CTL_ADD, c.fd, &ev) != 0) {
        Finish(c, 0, false);
        return;
      }
      if (::connect(c.fd, reinterpret_cast<const sockaddr*>(&addr_), addr_len_) != 0) {
        if (errno != EINPROGRESS) {
          Finish(c, 0, false);
          return;
        }
        c.connecting = true;
        return;  // the write starts when the connection is up
      }
    }
    Write(c);
  }

  // Writes what the socket takes; false when the connection failed.
  bool Write(Connection& c) {
    const size_t total = c.head.size() + c.body.size();
    while (c.written < total) {
      iovec iov[2];
      int cnt = 0;
      if (c.written < c.head.size()) {
        iov[cnt++] = {c.head.data() + c.written, c.head.size() - c.written};
        iov[cnt++] = {c.body.data(), c.body.size()};
      } else {
        const size_t off = c.written - c.head.size();
        iov[cnt++] = {c.body.data() + off, c.body.size() - off};
      }
      const ssize_t n = ::writev(c.fd, iov, cnt);
      if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
      if (n <= 0) {
        Finish(c, 0, false);
        return false;
      }
      c.written += static_cast<size_t>(n);
    }
    SetWantWrite(c, c.written < total);
    return true;
  }

  void SetWantWrite(Connection& c, bool want) {
    if (c.want_write == want) return;
    c.want_write = want;
    epoll_event ev{};
    ev.events = EPOLLIN | (want ? EPOLLOUT : 0u);
    ev.data.u32 = static_cast<uint32_t>(&c - conns_.data());
    ::epoll_ctl(ep_, EPOLL_CTL_MOD, c.fd, &ev);
  }

  void Read(Connection& c) {
    char tmp[16384];
    for (;;) {
      const ssize_t n = ::recv(c.fd, tmp, sizeof(tmp), 0);
      if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
      if (n <= 0) {
        Finish(c, 0, false);
        return;
      }
      c.in.append(tmp, static_cast<size_t>(n));
      if (static_cast<size_t>(n) < sizeof(tmp)) break;
    }
    const size_t end = c.in.find("\r\n\r\n");
    if (end == std::string::npos) return;
    const int status = c.in.size() > 12 ? std::atoi(c.in.c_str() + 9) : 0;
    size_t length = 0;
    bool close = false;
    for (size_t pos = c.in.find("\r\n") + 2; pos < end;) {
      const size_t next = c.in.find("\r\n", pos);
      std::string line = c.in.substr(pos, next - pos);
      for (auto& ch : line) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
      if (line.rfind("content-length:", 0) == 0) {
        length = std::strtoul(line.c_str() + 15, nullptr, 10);
      }
      if (line.rfind("connection:", 0) == 0 && line.find("close") != std::string::npos) {
        close = true;
      }
      pos = next + 2;
    }
    if (c.in.size() < end + 4 + length) return;
    static constexpr std::string_view kDuplicate = "{\"status\":\"duplicate\"";
    const std::string_view answer = std::string_view(c.in).substr(end + 4, length);
    const bool dup = answer.substr(0, kDuplicate.size()) == kDuplicate;
    if (!opt_.acked_path.empty() && status >= 200 && status < 300) {
      static constexpr std::string_view kId = "\"event_id\":\"";
      const size_t at = answer.find(kId);
      const size_t quote = at == std::string_view::npos ? at : answer.find('"', at + kId.size());
      if (quote != std::string_view::npos) {
        s_.acked.emplace_back(answer.substr(at + kId.size(), quote - at - kId.size()));
      }
    }
    c.in.erase(0, end + 4 + length);
    // An answer before the whole request was sent (e.g. 413) leaves the stream unusable.
    if (c.written < c.head.size() + c.body.size()) close = true;
    Finish(c, status, dup);
    if (close) CloseConn(c);
  }

  // Records the request's result and frees its slot; status 0 (error or timeout) also closes.
  void Finish(Connection& c, int status, bool dup) {
    // Latency is that of answers; errors and timeouts are counted by status only.
    if (status != 0) {
      s_.latency.Record(
          std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now() - c.due).count());
    }
    ++s_.by_status[status];
    ++s_.sent;
    if (dup) ++s_.duplicates;
    c.busy = false;
    if (status == 0) CloseConn(c);
    idle_.push_back(static_cast<size_t>(&c - conns_.data()));
  }

  void CloseConn(Connection& c) {
    if (c.fd >= 0) ::close(c.fd);  // closing also removes it from the epoll set
    c.fd = -1;
    c.connecting = false;
    c.want_write = false;
    c.in.clear();
  }

  const Options& opt_;
  const Target& target_;
  const Workload& w_;
  const std::string& extra_;
  sockaddr_storage addr_;
  socklen_t addr_len_;
  int threads_;
  std::vector<Connection> conns_;
  std::vector<size_t> idle_;
  std::deque<std::pair<uint64_t, Clock::time_point>> waiting_;
  Clock::time_point start_, deadline_, next_due_;
  std::atomic<uint64_t>* next_;
  uint64_t next_open_;
  bool open_done_ = false, closed_done_ = false;
  int ep_ = -1;
  ThreadStats s_;
};

double Ms(int64_t ns) { return static_cast<double>(ns) / 1e6; }

int Run(const Options& opt) {
  Target target;
  if (!ParseUrl(opt.url, &target)) {
    std::fprintf(stderr, "loadgen: --url must be http://host:port/path, got %s\n", opt.url.c_str());
    return 2;
  }
  Workload w{&opt, {}, {}};
  for (const auto& path : opt.bodies) {
    BodyTemplate t;
    std::string err;
    if (!LoadTemplate(path, &t, &err)) {
      std::fprintf(stderr, "loadgen: %s\n", err.c_str());
      return 2;
    }
    w.templates.push_back(std::move(t));
  }
  if (w.templates.empty()) {
    std::fprintf(stderr, "loadgen: give at least one --body file\n");
    return 2;
  }
  std::string extra;
  for (const auto& h : opt.headers) extra += h + "\r\n";

  addrinfo hints{}, *res = nullptr;
  hints.ai_socktype = SOCK_STREAM;
  if (::getaddrinfo(target.host.c_str(), std::to_string(target.port).c_str(), &hints, &res) != 0 ||
      res == nullptr) {
    std::fprintf(stderr, "loadgen: cannot resolve %s\n", target.host.c_str());
    return 2;
  }
  sockaddr_storage addr{};
  const socklen_t addr_len = res->ai_addrlen;
  std::memcpy(&addr, res->ai_addr, res->ai_addrlen);
  ::freeaddrinfo(res);

  const int threads = std::min(opt.threads, opt.connections);
  const auto start = Clock::now();
  const auto deadline = start + std::chrono::duration_cast<Clock::duration>(
                                    std::chrono::duration<double>(opt.duration_s));
  std::atomic<uint64_t> next{0};
  std::vector<std::unique_ptr<Worker>> workers;
  for (int t = 0; t < threads; ++t) {
    const int conns = opt.connections / threads + (t < opt.connections % threads ? 1 : 0);
    workers.push_back(std::make_unique<Worker>(opt, target, w, extra, addr, addr_len, t, threads,
                                               conns, start, deadline, &next));
  }
  std::vector<std::thread> pool;
  for (auto& worker : workers) pool.emplace_back([&worker] { worker->Run(); });
  for (auto& t : pool) t.join();
  const double elapsed = std::chrono::duration<double>(Clock::now() - start).count();

  ThreadStats all;
  for (auto& worker : workers) {
    const ThreadStats& s = worker->stats();
    all.latency.Merge(s.latency);
    for (const auto& [k, v] : s.by_status) all.by_status[k] += v;
    all.duplicates += s.duplicates;
    all.sent += s.sent;
    all.acked.insert(all.acked.end(), s.acked.begin(), s.acked.end());
  }
  const uint64_t ok = [&] {
    uint64_t n = 0;
    for (const auto& [k, v] : all.by_status) n += (k >= 200 && k < 300) ? v : 0;
    return n;
  }();
  const double achieved = static_cast<double>(all.sent) / elapsed;
  const double ok_rate = static_cast<double>(ok) / elapsed;
  const LatencyHistogram& h = all.latency;

  std::printf(
      "target      %s (%s loop%s, %d connections)\n", opt.url.c_str(),
      opt.rate > 0 ? "open" : "closed",
      opt.rate > 0 ? (", " + std::to_string(static_cast<int64_t>(opt.rate)) + "/s").c_str() : "",
      opt.connections);
  std::printf("requests    %llu in %.2f s = %.0f/s (2xx %llu = %.0f/s, duplicates acked %llu)\n",
              static_cast<unsigned long long>(all.sent), elapsed, achieved,
              static_cast<unsigned long long>(ok), ok_rate,
              static_cast<unsigned long long>(all.duplicates));
  for (const auto& [k, v] : all.by_status) {
    std::printf("  status %-4s %llu\n", k == 0 ? "err" : std::to_string(k).c_str(),
                static_cast<unsigned long long>(v));
  }
  std::printf("latency ms  p50 %.3f  p90 %.3f  p99 %.3f  p99.9 %.3f  max %.3f  mean %.3f\n",
              Ms(h.Percentile(0.5)), Ms(h.Percentile(0.9)), Ms(h.Percentile(0.99)),
              Ms(h.Percentile(0.999)), Ms(h.max_ns()), h.mean_ns() / 1e6);

  if (!opt.json_path.empty()) {
    std::ostringstream j;
    j << "{\"url\":\"" << opt.url << "\",\"mode\":\"" << (opt.rate > 0 ? "open" : "closed")
      << "\",\"target_rate\":" << opt.rate << ",\"connections\":" << opt.connections
      << ",\"elapsed_s\":" << elapsed << ",\"requests\":" << all.sent << ",\"ok\":" << ok
      << ",\"duplicates\":" << all.duplicates << ",\"achieved_rate\":" << achieved
      << ",\"ok_rate\":" << ok_rate << ",\"status\":{";
    bool first = true;
    for (const auto& [k, v] : all.by_status) {
      j << (first ? "" : ",") << "\"" << (k == 0 ? std::string("error") : std::to_string(k))
        << "\":" << v;
      first = false;
    }
    j << "},\"latency_ms\":{\"p50\":" << Ms(h.Percentile(0.5))
      << ",\"p90\":" << Ms(h.Percentile(0.9)) << ",\"p99\":" << Ms(h.Percentile(0.99))
      << ",\"p999\":" << Ms(h.Percentile(0.999)) << ",\"max\":" << Ms(h.max_ns())
      << ",\"mean\":" << h.mean_ns() / 1e6 << "}}\n";
    std::ofstream out(opt.json_path);
    out << j.str();
    if (!out) {
      std::fprintf(stderr, "loadgen: cannot write %s\n", opt.json_path.c_str());
      return 1;
    }
  }
  if (!opt.acked_path.empty()) {
    std::ofstream out(opt.acked_path);
    for (const std::string& id : all.acked) out << id << '\n';
    if (!out) {
      std::fprintf(stderr, "loadgen: cannot write %s\n", opt.acked_path.c_str());
      return 1;
    }
  }
  return all.by_status.count(0) ? 1 : 0;
}

}  // namespace
}  // namespace dvrouter::bench

int main(int argc, char** argv) {
  dvrouter::bench::Options o;
  CLI::App cli{"dvrouter-loadgen: post Dataverse webhook bodies and measure latency"};
  cli.add_option("--url", o.url, "Target URL (http://host:port/path?query)");
  cli.add_option("--rate", o.rate, "Requests per second, open loop; 0 = closed loop")
      ->check(CLI::NonNegativeNumber);
  cli.add_option("--duration", o.duration_s, "Seconds to run")->check(CLI::Range(0.1, 3600.0));
  cli.add_option("--requests", o.requests, "Stop after this many requests (0: duration only)");
  cli.add_option("--connections", o.connections, "Concurrent connections")
      ->check(CLI::Range(1, 512));
  cli.add_option("--threads", o.threads, "Threads driving the connections (epoll each)")
      ->check(CLI::Range(1, 64));
  cli.add_option("--body", o.bodies, "Dataverse body file to post (repeatable)")->required();
  cli.add_option("--records", o.records, "Distinct rows the events touch")
      ->check(CLI::PositiveNumber);
  cli.add_option("--hot-share", o.hot_share, "Share of events on hot rows")
      ->check(CLI::Range(0.0, 1.0));
  cli.add_option("--hot-records", o.hot_records, "Number of hot rows");
  cli.add_option("--duplicates", o.duplicate_share, "Share of requests resending an earlier event")
      ->check(CLI::Range(0.0, 1.0));
  cli.add_option("-H,--header", o.headers, "Extra header 'Name: value' (repeatable)");
  cli.add_option("--timeout-ms", o.timeout_ms, "Per-request socket timeout");
  cli.add_option("--json", o.json_path, "Also write the results as JSON to this file");
  cli.add_option("--acked", o.acked_path,
                 "Write the event_id of every 2xx answer to this file, one a line");
  cli.add_option("--seed", o.seed, "Varies the generated ids between runs");
  cli.add_option("--vary", o.vary,
                 "all: every GUID and long number in a body differs per request; ids: only the "
                 "operation and row ids")
      ->check(CLI::IsMember({"all", "ids"}));
  CLI11_PARSE(cli, argc, argv);
  // A server that resets a connection mid-request must cost that request (counted as an
  // error), not the process and its report.
  std::signal(SIGPIPE, SIG_IGN);
  return dvrouter::bench::Run(o);
}
