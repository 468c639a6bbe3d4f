// FreeLoopbackPort (docs/testing.md, "Ports"): the ports it hands to test servers.
#include "tests/support/test_util.h"

#include <gtest/gtest.h>
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
    const int fd = ListenOnLoopback(port);
    EXPECT_GE(fd, 0) << port;
    if (fd >= 0) ::close(fd);
  }
}

}  // namespace
}  // namespace dvrouter::testing
