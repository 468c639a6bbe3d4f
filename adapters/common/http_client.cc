#include "adapters/common/http_client.h"

#include <openssl/ssl.h>
#include <zlib.h>

#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <cctype>
#include <charconv>
#include <chrono>
#include <ctime>

namespace dvrouter {

namespace net = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace ssl = net::ssl;
using tcp = net::ip::tcp;

namespace {

std::string Lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

// Runs one asynchronous operation to completion on the connection's own io_context, from the
// calling thread (the stream's expiry bounds it).
template <typename Start>
beast::error_code Run(net::io_context& ioc, Start&& start) {
  beast::error_code result = net::error::would_block;
  ioc.restart();
  start([&result](beast::error_code ec, auto&&...) { result = ec; });
  ioc.run();
  return result;
}

Status ErrorStatus(const std::string& what, const beast::error_code& ec, uint64_t timeout_ms) {
  if (ec == beast::error::timeout) {
    return DeadlineExceeded(what + ": timed out after " + std::to_string(timeout_ms) + " ms");
  }
  if (ec == http::error::body_limit || ec == http::error::header_limit) {
    return ResourceExhausted(what + ": answer too large");
  }
  return Unavailable(what + ": " + ec.message());
}

bool StaleConnection(const beast::error_code& ec) {
  return ec == http::error::end_of_stream || ec == net::error::eof ||
         ec == net::error::connection_reset || ec == net::error::broken_pipe ||
         ec == ssl::error::stream_truncated;
}

}  // namespace

std::string CanonicalOrigin(const Url& url) {
  std::string host = url.host;
  for (char& c : host) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  if (host.find(':') != std::string::npos) host = "[" + host + "]";  // IPv6
  return std::string(url.tls ? "https://" : "http://") + host + ":" + std::to_string(url.port);
}

Result<Url> ParseUrl(std::string_view url) {
  Url out;
  std::string_view rest;
  if (url.starts_with("http://")) {
    rest = url.substr(7);
    out.port = 80;
  } else if (url.starts_with("https://")) {
    rest = url.substr(8);
    out.tls = true;
    out.port = 443;
  } else {
    return InvalidArgument("URL must start with http:// or https://: '" + std::string(url) + "'");
  }
  const size_t end = rest.find_first_of("/?#");
  std::string_view authority = rest.substr(0, end);
  std::string_view target = end == std::string_view::npos ? "" : rest.substr(end);
  if (target.find('#') != std::string_view::npos) target = target.substr(0, target.find('#'));
  if (authority.find('@') != std::string_view::npos) {
    return InvalidArgument("URL must not carry credentials: '" + std::string(url) + "'");
  }
  std::string_view port;
  if (authority.starts_with("[")) {
    const size_t close = authority.find(']');
    if (close == std::string_view::npos) return InvalidArgument("URL: unclosed '[' in host");
    out.host = std::string(authority.substr(1, close - 1));
    if (close + 1 < authority.size()) {
      if (authority[close + 1] != ':') return InvalidArgument("URL: expected ':' after ']'");
      port = authority.substr(close + 2);
    }
  } else {
    const size_t colon = authority.rfind(':');
    out.host = std::string(authority.substr(0, colon));
    if (colon != std::string_view::npos) port = authority.substr(colon + 1);
  }
  if (out.host.empty()) return InvalidArgument("URL has no host: '" + std::string(url) + "'");
  // A host name (letters, digits, '-', '.', '_') or, in brackets, an IPv6 address: nothing that
  // could end up elsewhere in a request line or a Host header.
  const bool bracketed = authority.starts_with("[");
  for (char c : out.host) {
    const bool ok = std::isalnum(static_cast<unsigned char>(c)) || c == '.' ||
                    (bracketed ? c == ':' : (c == '-' || c == '_'));
    if (!ok) return InvalidArgument("URL host has a character a host name cannot have");
  }
  if (!port.empty() || authority.ends_with(":")) {
    unsigned value = 0;
    auto [ptr, ec] = std::from_chars(port.data(), port.data() + port.size(), value);
    if (ec != std::errc() || ptr != port.data() + port.size() || value == 0 || value > 65535) {
      return InvalidArgument("URL port must be 1-65535, got '" + std::string(port) + "'");
    }
    out.port = static_cast<uint16_t>(value);
  }
  out.target = target.empty()            ? "/"
               : target.starts_with("?") ? "/" + std::string(target)
                                         : std::string(target);
  return out;
}

std::string ClientResponse::Header(std::string_view name) const {
  for (const auto& [k, v] : headers) {
    if (k == name) return v;
  }
  return "";
}

Status GzipCompress(std::string_view in, std::string* out, int level) {
  z_stream zs{};
  if (deflateInit2(&zs, level, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK) {
    return Internal("deflateInit2 failed");
  }
  out->resize(deflateBound(&zs, static_cast<uLong>(in.size())) + 32);
  zs.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(in.data()));
  zs.avail_in = static_cast<uInt>(in.size());
  zs.next_out = reinterpret_cast<Bytef*>(out->data());
  zs.avail_out = static_cast<uInt>(out->size());
  const int rc = deflate(&zs, Z_FINISH);
  const size_t produced = zs.total_out;
  deflateEnd(&zs);
  if (rc != Z_STREAM_END) return Internal("deflate did not finish");
  out->resize(produced);
  return Status::Ok();
}

Status GzipDecompress(std::string_view in, std::string* out) {
  z_stream zs{};
  if (inflateInit2(&zs, 15 + 16) != Z_OK) return Internal("inflateInit2 failed");
  zs.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(in.data()));
  zs.avail_in = static_cast<uInt>(in.size());
  out->clear();
  int rc = Z_OK;
  char buf[16384];
  while (rc == Z_OK) {
    zs.next_out = reinterpret_cast<Bytef*>(buf);
    zs.avail_out = sizeof(buf);
    rc = inflate(&zs, Z_NO_FLUSH);
    if (rc != Z_OK && rc != Z_STREAM_END) break;
    out->append(buf, sizeof(buf) - zs.avail_out);
  }
  inflateEnd(&zs);
  if (rc != Z_STREAM_END) return InvalidArgument("gzip data is damaged or truncated");
  return Status::Ok();
}

struct HttpClient::Tls {
  ssl::context ctx{ssl::context::tls_client};
  Status status;
};

struct HttpClient::Conn {
  net::io_context ioc;
  std::unique_ptr<beast::tcp_stream> plain;
  std::unique_ptr<beast::ssl_stream<beast::tcp_stream>> secure;
  beast::flat_buffer buffer;
  beast::tcp_stream& lowest() { return plain ? *plain : beast::get_lowest_layer(*secure); }
};

HttpClient::HttpClient(HttpClientOptions options) : options_(std::move(options)) {}

HttpClient::~HttpClient() = default;

uint64_t HttpClient::connections_opened() const {
  std::lock_guard<std::mutex> lock(mu_);
  return opened_;
}

std::unique_ptr<HttpClient::Conn> HttpClient::TakeIdle(const std::string& key) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = idle_.find(key);
  if (it == idle_.end() || it->second.empty()) return nullptr;
  std::unique_ptr<Conn> c = std::move(it->second.back());
  it->second.pop_back();
  return c;
}

void HttpClient::PutIdle(const std::string& key, std::unique_ptr<Conn> conn) {
  std::lock_guard<std::mutex> lock(mu_);
  auto& pool = idle_[key];
  if (pool.size() < options_.max_idle_per_host) pool.push_back(std::move(conn));
}

Result<std::unique_ptr<HttpClient::Conn>> HttpClient::Open(const Url& url) {
  auto c = std::make_unique<Conn>();
  const std::string where =
      (url.tls ? "https://" : "http://") + url.host + ":" + std::to_string(url.port);
  if (url.tls) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (!tls_) {
        tls_ = std::make_unique<Tls>();
        beast::error_code ec;
        SSL_CTX_set_min_proto_version(tls_->ctx.native_handle(), TLS1_2_VERSION);
        if (options_.ca_file.empty()) {
          tls_->ctx.set_default_verify_paths(ec);
        } else {
          tls_->ctx.load_verify_file(options_.ca_file, ec);
        }
        if (ec) tls_->status = InvalidArgument("CA file " + options_.ca_file + ": " + ec.message());
        tls_->ctx.set_verify_mode(ssl::verify_peer);
      }
      if (!tls_->status.ok()) return tls_->status;
    }
    c->secure = std::make_unique<beast::ssl_stream<beast::tcp_stream>>(c->ioc, tls_->ctx);
    beast::error_code ip_ec;
    (void)net::ip::make_address(url.host, ip_ec);
    // SNI carries host names only (RFC 6066): none for an IP address.
    if (ip_ec && !SSL_set_tlsext_host_name(c->secure->native_handle(), url.host.c_str())) {
      return InvalidArgument(where + ": cannot set the TLS server name");
    }
    c->secure->set_verify_callback(ssl::host_name_verification(url.host));
  } else {
    c->plain = std::make_unique<beast::tcp_stream>(c->ioc);
  }
  tcp::resolver resolver(c->ioc);
  beast::error_code ec;
  const auto endpoints = resolver.resolve(url.host, std::to_string(url.port), ec);
  if (ec) return Unavailable(where + ": resolve: " + ec.message());
  const auto timeout = std::chrono::milliseconds(options_.connect_timeout_ms);
  c->lowest().expires_after(timeout);
  ec = Run(c->ioc, [&](auto handler) { c->lowest().async_connect(endpoints, std::move(handler)); });
  if (ec) return ErrorStatus(where + ": connect", ec, options_.connect_timeout_ms);
  (void)c->lowest().socket().set_option(tcp::no_delay(true), ec);
  if (c->secure) {
    c->lowest().expires_after(timeout);
    ec = Run(c->ioc, [&](auto handler) {
      c->secure->async_handshake(ssl::stream_base::client, std::move(handler));
    });
    if (ec) return ErrorStatus(where + ": TLS handshake", ec, options_.connect_timeout_ms);
  }
  std::lock_guard<std::mutex> lock(mu_);
  ++opened_;
  return c;
}

namespace {

// The request's body is sent from the caller's string, not copied into the message (a
// ClickHouse insert is megabytes).
using RequestBody = http::span_body<const char>;

template <typename Stream>
beast::error_code Exchange(net::io_context& ioc, Stream& stream, beast::flat_buffer& buffer,
                           http::request<RequestBody>& req,
                           http::response_parser<http::string_body>& parser, bool* answered) {
  beast::error_code ec =
      Run(ioc, [&](auto handler) { http::async_write(stream, req, std::move(handler)); });
  if (ec) return ec;
  ec = Run(ioc, [&](auto handler) {
    http::async_read_header(stream, buffer, parser, std::move(handler));
  });
  if (ec) return ec;
  *answered = true;
  return Run(ioc,
             [&](auto handler) { http::async_read(stream, buffer, parser, std::move(handler)); });
}

}  // namespace

Result<ClientResponse> HttpClient::Send(const ClientRequest& request) {
  // Beast does not refuse CR/LF in header values: a secret with a trailing newline would split
  // the request. Refuse instead of sending something else than asked.
  for (const auto& [name, value] : request.headers) {
    if (name.empty() || name.find_first_of(":\r\n", 0) != std::string::npos ||
        value.find_first_of(std::string_view("\r\n\0", 3)) != std::string::npos ||
        value.size() > 16384) {
      return InvalidArgument("header '" + name.substr(0, 64) +
                             "' has a control character or is too long");
    }
  }
  try {
    return SendChecked(request);
  } catch (const std::exception& e) {  // allocation, TLS setup: never out of an adapter thread
    return Unavailable(std::string("HTTP client: ") + e.what());
  }
}

Result<ClientResponse> HttpClient::SendChecked(const ClientRequest& request) {
  Result<Url> url = ParseUrl(request.url);
  if (!url.ok()) return url.status();
  const http::verb verb = http::string_to_verb(request.method);
  if (verb == http::verb::unknown) return InvalidArgument("unknown HTTP method " + request.method);
  std::string body;
  if (request.gzip) {
    if (Status st = GzipCompress(request.payload(), &body); !st.ok()) return st;
  }
  const std::string key =
      (url->tls ? "https://" : "http://") + url->host + ":" + std::to_string(url->port);
  const bool default_port = url->port == (url->tls ? 443 : 80);
  const std::string host_header =
      (url->host.find(':') != std::string::npos ? "[" + url->host + "]" : url->host) +
      (default_port ? "" : ":" + std::to_string(url->port));

  for (int attempt = 0;; ++attempt) {
    std::unique_ptr<Conn> c = attempt == 0 ? TakeIdle(key) : nullptr;
    const bool reused = c != nullptr;
    if (!c) {
      Result<std::unique_ptr<Conn>> opened = Open(*url);
      if (!opened.ok()) return opened.status();
      c = std::move(opened.value());
    }
    http::request<RequestBody> req{verb, url->target, 11};
    req.set(http::field::host, host_header);
    req.set(http::field::user_agent, options_.user_agent);
    for (const auto& [name, value] : request.headers) req.set(name, value);
    if (request.gzip) req.set(http::field::content_encoding, "gzip");
    const std::string_view payload = request.gzip ? std::string_view(body) : request.payload();
    req.body() = RequestBody::value_type(payload.data(), payload.size());
    req.keep_alive(true);
    req.prepare_payload();
    http::response_parser<http::string_body> parser;
    parser.body_limit(options_.max_response_bytes);
    parser.header_limit(64 * 1024);
    c->lowest().expires_after(std::chrono::milliseconds(options_.request_timeout_ms));
    bool answered = false;
    const beast::error_code ec =
        c->secure ? Exchange(c->ioc, *c->secure, c->buffer, req, parser, &answered)
                  : Exchange(c->ioc, *c->plain, c->buffer, req, parser, &answered);
    if (ec) {
      if (reused && !answered && StaleConnection(ec)) continue;  // closed while idle
      return ErrorStatus(request.method + " " + key + url->target.substr(0, 64), ec,
                         options_.request_timeout_ms);
    }
    http::response<http::string_body> res = parser.release();
    ClientResponse out;
    out.status = static_cast<int>(res.result_int());
    for (const auto& field : res) {
      out.headers.emplace_back(Lower(field.name_string()), std::string(field.value()));
    }
    const bool keep = res.keep_alive();
    out.body = std::move(res.body());
    if (keep) PutIdle(key, std::move(c));
    return out;
  }
}

int64_t ParseRetryAfter(std::string_view value, int64_t now_epoch_s) {
  while (!value.empty() && value.front() == ' ') value.remove_prefix(1);
  while (!value.empty() && value.back() == ' ') value.remove_suffix(1);
  if (value.empty()) return -1;
  if (std::all_of(value.begin(), value.end(), [](char c) { return c >= '0' && c <= '9'; })) {
    if (value.size() > 9) return -1;
    return std::stoll(std::string(value)) * 1000;
  }
  std::tm tm{};
  const std::string text(value);
  const char* end = strptime(text.c_str(), "%a, %d %b %Y %H:%M:%S GMT", &tm);
  if (end == nullptr || *end != '\0') return -1;
  const int64_t at = timegm(&tm);
  return std::max<int64_t>(0, (at - now_epoch_s) * 1000);
}

}  // namespace dvrouter
