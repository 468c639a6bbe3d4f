// FreeLoopbackPort (docs/testing.md, "Ports"): the ports it hands to test servers.
#include "tests/support/test_util.h"

#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <fstream>
#include <set>

namespace dvrouter::testing {
namespace {

// A port of the ephemeral range can be taken by any outgoing connection's source port between
// its choice and the server's bind; so every port given lies outside it, none is given twice,
// and each can be listened on.
TEST(FreeLoopbackPortTest, PortsLieOutsideTheEphemeralRangeAreDistinctAndCanBeListenedOn) {
  std::ifstream range("/proc/sys/net/ipv4/ip_local_port_range");
  int low = 0;
  int high = 0;
  ASSERT_TRUE(range >> low >> high);
  if (low < 11000 && high > 64535) GTEST_SKIP() << "no room outside " << low << "-" << high;
  std::set<uint16_t> seen;
  for (int i = 0; i < 200; ++i) {
    const uint16_t port = FreeLoopbackPort();
    ASSERT_NE(port, 0);
    EXPECT_TRUE(port < low || port > high) << port << " in " << low << "-" << high;
    EXPECT_TRUE(seen.insert(port).second) << port << " given twice";
    const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    ASSERT_GE(fd, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = htons(port);
    EXPECT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0) << port;
    EXPECT_EQ(::listen(fd, 1), 0) << port;
    ::close(fd);
  }
}

}  // namespace
}  // namespace dvrouter::testing
