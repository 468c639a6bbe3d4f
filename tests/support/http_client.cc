#include "tests/support/http_client.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cstring>
#include <utility>

namespace dvrouter::testing {

HttpClient::HttpClient(uint16_t port, std::string host) : port_(port), host_(std::move(host)) {}

HttpClient::~HttpClient() {
  if (fd_ >= 0) ::close(fd_);
}

bool HttpClient::Connect() {
  if (fd_ >= 0) ::close(fd_);
  buffer_.clear();
  fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd_ < 0) return false;
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port_);
  ::inet_pton(AF_INET, host_.c_str(), &addr.sin_addr);
  if (::connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    ::close(fd_);
    fd_ = -1;
    return false;
  }
  int one = 1;
  ::setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  return true;
}

bool HttpClient::SendRaw(const std::string& bytes) {
  if (fd_ < 0 && !Connect()) return false;
  size_t done = 0;
  while (done < bytes.size()) {
    ssize_t n = ::send(fd_, bytes.data() + done, bytes.size() - done, MSG_NOSIGNAL);
    if (n <= 0) return false;
    done += static_cast<size_t>(n);
  }
  return true;
}

bool HttpClient::Fill(std::chrono::steady_clock::time_point deadline) {
  if (fd_ < 0) return false;
  auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
      deadline - std::chrono::steady_clock::now());
  if (left.count() <= 0) return false;
  pollfd p{fd_, POLLIN, 0};
  if (::poll(&p, 1, static_cast<int>(left.count())) <= 0) return false;
  char buf[16384];
  ssize_t n = ::recv(fd_, buf, sizeof(buf), 0);
  if (n <= 0) {
    ::close(fd_);
    fd_ = -1;
    return false;
  }
  buffer_.append(buf, static_cast<size_t>(n));
  return true;
}

HttpReply HttpClient::ReadReply(std::chrono::milliseconds timeout, bool skip_interim,
                                bool head_request) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  HttpReply reply;
  size_t end;
  while ((end = buffer_.find("\r\n\r\n")) == std::string::npos) {
    if (!Fill(deadline)) return reply;
  }
  std::string head = buffer_.substr(0, end);
  buffer_.erase(0, end + 4);
  size_t line_end = head.find("\r\n");
  std::string status_line = head.substr(0, line_end);
  if (status_line.size() >= 12) reply.status = std::atoi(status_line.c_str() + 9);
  size_t pos = line_end == std::string::npos ? head.size() : line_end + 2;
  while (pos < head.size()) {
    size_t next = head.find("\r\n", pos);
    if (next == std::string::npos) next = head.size();
    std::string line = head.substr(pos, next - pos);
    size_t colon = line.find(':');
    if (colon != std::string::npos) {
      std::string name = line.substr(0, colon);
      std::transform(name.begin(), name.end(), name.begin(),
                     [](unsigned char c) { return std::tolower(c); });
      size_t v = colon + 1;
      while (v < line.size() && line[v] == ' ') ++v;
      reply.headers[name] = line.substr(v);
    }
    pos = next + 2;
  }
  if (reply.status == 100) return skip_interim ? ReadReply(timeout, true, head_request) : reply;
  if (head_request) return reply;
  if (reply.headers["transfer-encoding"] == "chunked") {
    // <hex size>\r\n<data>\r\n ... 0\r\n\r\n (answers of ClickHouse, for one).
    for (;;) {
      size_t eol;
      while ((eol = buffer_.find("\r\n")) == std::string::npos) {
        if (!Fill(deadline)) return HttpReply{};
      }
      const size_t size = std::stoul(buffer_.substr(0, eol), nullptr, 16);
      while (buffer_.size() < eol + 2 + size + 2) {
        if (!Fill(deadline)) return HttpReply{};
      }
      reply.body += buffer_.substr(eol + 2, size);
      buffer_.erase(0, eol + 2 + size + 2);
      if (size == 0) return reply;
    }
  }
  size_t length = 0;
  if (auto it = reply.headers.find("content-length"); it != reply.headers.end()) {
    length = std::stoul(it->second);
  }
  while (buffer_.size() < length) {
    if (!Fill(deadline)) {
      reply.status = 0;
      return reply;
    }
  }
  reply.body = buffer_.substr(0, length);
  buffer_.erase(0, length);
  if (honor_connection_close_ && reply.headers["connection"] == "close") {
    // As a real client does: the next request opens a new connection.
    ::close(fd_);
    fd_ = -1;
    buffer_.clear();
  }
  return reply;
}

std::string HttpClient::ReadAvailable(std::chrono::milliseconds timeout) {
  if (buffer_.empty()) Fill(std::chrono::steady_clock::now() + timeout);
  return std::exchange(buffer_, std::string());
}

bool HttpClient::WaitClosed(std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (fd_ >= 0) {
    if (!Fill(deadline) && fd_ >= 0) return false;
  }
  return true;
}

HttpReply HttpClient::Request(const std::string& method, const std::string& target,
                              const std::string& body,
                              const std::map<std::string, std::string>& headers) {
  std::string req = method + " " + target + " HTTP/1.1\r\nHost: " + host_ + "\r\n";
  for (const auto& [k, v] : headers) req += k + ": " + v + "\r\n";
  if (!body.empty() || method == "POST") {
    req += "Content-Length: " + std::to_string(body.size()) + "\r\n";
  }
  req += "\r\n";
  req += body;
  if (!SendRaw(req)) return {};
  return ReadReply(std::chrono::seconds(10), true, method == "HEAD");
}

}  // namespace dvrouter::testing
