// dvrouter-loadgen: posts real Dataverse webhook bodies to a URL and reports throughput and
// latency percentiles.
//
// Bodies are the fixtures (or --body files) with their OperationId and PrimaryEntityId varied per
// request, so every request is a distinct event on one of --records rows (a --hot-share of them
// on --hot-records hot rows); --duplicates resends earlier events. Open loop (--rate R): request
// i is due at start + i/R and its latency is measured from that due time, so a stalled server
// shows up in the percentiles instead of silently slowing the sender (no coordinated omission).
// Closed loop (--rate 0): each connection sends as fast as answers come back. Blocking sockets,
// one thread per connection; only loopback or addresses you give it.
#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <map>
#include <mutex>
#include <sstream>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

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
  std::vector<std::string> bodies;
  uint64_t records = 100'000;
  double hot_share = 0.0;
  uint64_t hot_records = 100;
  double duplicate_share = 0.0;
  std::vector<std::string> headers;
  int timeout_ms = 60'000;
  std::string json_path;
  uint64_t seed = 1;
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

uint64_t Mix(uint64_t x) {  // splitmix64: a cheap, good-enough deterministic hash
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

void WriteGuid(uint64_t kind, uint64_t n, char* out) {
  char buf[40];
  std::snprintf(buf, sizeof(buf), "%08llx-%04llx-4000-8000-%012llx",
                static_cast<unsigned long long>(Mix(kind) & 0xffffffffu),
                static_cast<unsigned long long>(kind & 0xffff),
                static_cast<unsigned long long>(n & 0xffffffffffffull));
  std::memcpy(out, buf, 36);
}

// A body with the positions of every copy of its operation id and row id.
struct BodyTemplate {
  std::string text;
  std::vector<size_t> op_at, row_at;
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
    return t;
  }
};

struct ThreadStats {
  LatencyHistogram latency;
  std::map<int, uint64_t> by_status;  // 0: connection error or timeout
  uint64_t duplicates = 0;
  uint64_t sent = 0;
};

class Connection {
 public:
  Connection(const Target& t, int timeout_ms) : target_(t), timeout_ms_(timeout_ms) {}
  ~Connection() { Close(); }
  void Close() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
    buf_.clear();
  }
  // Returns the status, 0 on failure; *dup set when the answer says "duplicate".
  int Exchange(const std::string& head, const std::string& body, bool* dup) {
    if (fd_ < 0 && !Connect()) return 0;
    iovec iov[2] = {{const_cast<char*>(head.data()), head.size()},
                    {const_cast<char*>(body.data()), body.size()}};
    size_t left = head.size() + body.size();
    int idx = 0;
    while (left > 0) {
      ssize_t n = ::writev(fd_, iov + idx, 2 - idx);
      if (n <= 0) return Fail();
      left -= static_cast<size_t>(n);
      size_t k = static_cast<size_t>(n);
      while (idx < 2 && k >= iov[idx].iov_len) k -= iov[idx++].iov_len;
      if (idx < 2) {
        iov[idx].iov_base = static_cast<char*>(iov[idx].iov_base) + k;
        iov[idx].iov_len -= k;
      }
    }
    size_t end;
    while ((end = buf_.find("\r\n\r\n")) == std::string::npos) {
      if (!Fill()) return Fail();
    }
    int status = buf_.size() > 12 ? std::atoi(buf_.c_str() + 9) : 0;
    size_t length = 0;
    bool close = false;
    for (size_t pos = buf_.find("\r\n") + 2; pos < end;) {
      size_t next = buf_.find("\r\n", pos);
      std::string line = buf_.substr(pos, next - pos);
      for (auto& c : line) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
      if (line.rfind("content-length:", 0) == 0)
        length = std::strtoul(line.c_str() + 15, nullptr, 10);
      if (line.rfind("connection:", 0) == 0 && line.find("close") != std::string::npos)
        close = true;
      pos = next + 2;
    }
    while (buf_.size() < end + 4 + length) {
      if (!Fill()) return Fail();
    }
    static constexpr std::string_view kDuplicate = "{\"status\":\"duplicate\"";
    *dup = length >= kDuplicate.size() &&
           std::string_view(buf_).substr(end + 4, kDuplicate.size()) == kDuplicate;
    buf_.erase(0, end + 4 + length);
    if (close) Close();
    return status;
  }

 private:
  bool Connect() {
    addrinfo hints{}, *res = nullptr;
    hints.ai_socktype = SOCK_STREAM;
    if (::getaddrinfo(target_.host.c_str(), std::to_string(target_.port).c_str(), &hints, &res) !=
        0) {
      return false;
    }
    fd_ = ::socket(res->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    bool ok = fd_ >= 0 && ::connect(fd_, res->ai_addr, res->ai_addrlen) == 0;
    ::freeaddrinfo(res);
    if (!ok) {
      Close();
      return false;
    }
    int one = 1;
    ::setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    timeval tv{timeout_ms_ / 1000, (timeout_ms_ % 1000) * 1000};
    ::setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    ::setsockopt(fd_, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    return true;
  }
  bool Fill() {
    char tmp[16384];
    ssize_t n = ::recv(fd_, tmp, sizeof(tmp), 0);
    if (n <= 0) return false;
    buf_.append(tmp, static_cast<size_t>(n));
    return true;
  }
  int Fail() {
    Close();
    return 0;
  }

  Target target_;
  int timeout_ms_;
  int fd_ = -1;
  std::string buf_;
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

  const auto start = Clock::now();
  const auto deadline = start + std::chrono::duration_cast<Clock::duration>(
                                    std::chrono::duration<double>(opt.duration_s));
  const double interval_ns = opt.rate > 0 ? 1e9 / opt.rate : 0;
  std::atomic<uint64_t> next{0};
  std::vector<ThreadStats> stats(static_cast<size_t>(opt.connections));
  std::vector<std::thread> threads;
  for (int c = 0; c < opt.connections; ++c) {
    threads.emplace_back([&, c] {
      ThreadStats& s = stats[static_cast<size_t>(c)];
      Connection conn(target, opt.timeout_ms);
      std::string body, head;
      for (;;) {
        const uint64_t i = next.fetch_add(1);
        if (opt.requests > 0 && i >= opt.requests) break;
        Clock::time_point due = Clock::now();
        if (interval_ns > 0) {
          due = start + std::chrono::nanoseconds(
                            static_cast<int64_t>(interval_ns * static_cast<double>(i)));
          if (due >= deadline) break;
          std::this_thread::sleep_until(due);
        } else if (due >= deadline) {
          break;
        }
        w.Build(w.EventFor(i), &body);
        head = "POST " + target.path + " HTTP/1.1\r\nHost: " + target.host +
               "\r\nContent-Type: application/json\r\n" + extra +
               "Content-Length: " + std::to_string(body.size()) + "\r\n\r\n";
        if (interval_ns == 0) due = Clock::now();
        bool dup = false;
        const int status = conn.Exchange(head, body, &dup);
        s.latency.Record(
            std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now() - due).count());
        ++s.by_status[status];
        ++s.sent;
        if (dup) ++s.duplicates;
      }
    });
  }
  for (auto& t : threads) t.join();
  const double elapsed = std::chrono::duration<double>(Clock::now() - start).count();

  ThreadStats all;
  for (const auto& s : stats) {
    all.latency.Merge(s.latency);
    for (const auto& [k, v] : s.by_status) all.by_status[k] += v;
    all.duplicates += s.duplicates;
    all.sent += s.sent;
  }
  const uint64_t ok = [&] {
    uint64_t n = 0;
    for (const auto& [k, v] : all.by_status) n += (k >= 200 && k < 300) ? v : 0;
    return n;
  }();
  const double achieved = static_cast<double>(all.sent) / elapsed;
  const LatencyHistogram& h = all.latency;

  std::printf(
      "target      %s (%s loop%s, %d connections)\n", opt.url.c_str(),
      opt.rate > 0 ? "open" : "closed",
      opt.rate > 0 ? (", " + std::to_string(static_cast<int64_t>(opt.rate)) + "/s").c_str() : "",
      opt.connections);
  std::printf("requests    %llu in %.2f s = %.0f/s (2xx %llu, duplicates acked %llu)\n",
              static_cast<unsigned long long>(all.sent), elapsed, achieved,
              static_cast<unsigned long long>(ok), static_cast<unsigned long long>(all.duplicates));
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
      << ",\"status\":{";
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
  cli.add_option("--seed", o.seed, "Varies the generated ids between runs");
  CLI11_PARSE(cli, argc, argv);
  return dvrouter::bench::Run(o);
}
