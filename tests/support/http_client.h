// A deliberately small blocking HTTP/1.1 client over a raw socket, for tests: it can send
// exactly the bytes a test wants (malformed requests, slow clients) and reads one response at a
// time from a keep-alive connection. One thread per client.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <string>

namespace dvrouter::testing {

struct HttpReply {
  int status = 0;                              // 0: no response (connection closed or timed out)
  std::map<std::string, std::string> headers;  // lowercase names
  std::string body;
};

class HttpClient {
 public:
  explicit HttpClient(uint16_t port, std::string host = "127.0.0.1");
  ~HttpClient();
  HttpClient(const HttpClient&) = delete;
  HttpClient& operator=(const HttpClient&) = delete;

  bool Connect();
  // By default the client closes its socket after a `Connection: close` answer, as real clients
  // do; tests that check the server closes the connection itself turn that off.
  void set_honor_connection_close(bool honor) { honor_connection_close_ = honor; }
  bool connected() const { return fd_ >= 0; }
  // Sends raw bytes; false if the connection is closed.
  bool SendRaw(const std::string& bytes);
  // Reads one response; status 0 if the peer closed or the timeout passed first.
  // Interim 1xx answers are skipped unless skip_interim is false. The answer to a HEAD request
  // has no body whatever its Content-Length says: pass head_request = true.
  HttpReply ReadReply(std::chrono::milliseconds timeout = std::chrono::seconds(10),
                      bool skip_interim = true, bool head_request = false);
  // Bytes that arrive within `timeout` beyond the answers read so far (taken from the buffer).
  std::string ReadAvailable(std::chrono::milliseconds timeout);
  // True once the peer has closed the connection (reads EOF within timeout).
  bool WaitClosed(std::chrono::milliseconds timeout);

  HttpReply Request(const std::string& method, const std::string& target,
                    const std::string& body = "",
                    const std::map<std::string, std::string>& headers = {});
  HttpReply Post(const std::string& target, const std::string& body,
                 const std::map<std::string, std::string>& headers = {}) {
    return Request("POST", target, body, headers);
  }
  HttpReply Get(const std::string& target) { return Request("GET", target); }

 private:
  bool Fill(std::chrono::steady_clock::time_point deadline);
  uint16_t port_;
  std::string host_;
  int fd_ = -1;
  bool honor_connection_close_ = true;
  std::string buffer_;
};

}  // namespace dvrouter::testing
