// The three-server NATS test cluster itself: once constructed it places a stream of three
// replicas at the first request (tests that need one do not race the meta group's forming),
// and its servers' logs can be read for a failure message.
#include "tests/support/nats_server.h"

#include <gtest/gtest.h>

#include <string>

namespace dvrouter {
namespace {

TEST(NatsClusterFixture, PlacesThreeReplicasAtTheFirstRequest) {
  std::string why;
  if (!testing::NatsServer::Available(&why)) GTEST_SKIP() << why;
  testing::NatsCluster cluster;
  ASSERT_TRUE(cluster.ok()) << cluster.error();
  // One request, no retry: placing three replicas needs all three servers as the meta group's
  // peers.
  EXPECT_TRUE(cluster.PlaceThreeReplicas("FIXTURE", &why)) << why << "\n" << cluster.LogTails();
  const std::string logs = cluster.LogTails(5);
  for (size_t i = 0; i < cluster.size(); ++i) {
    EXPECT_NE(logs.find("/n" + std::to_string(i) + "/nats.log"), std::string::npos) << logs;
  }
}

}  // namespace
}  // namespace dvrouter
