// The three-server NATS test cluster itself: once constructed it places a stream of three
// replicas at the first request (tests that need one do not race the meta group's forming),
// and its servers' logs can be read for a failure message.
#include "tests/support/nats_server.h"

#include <gtest/gtest.h>
#include <nats/nats.h>

#include <string>
#include <vector>

namespace dvrouter {
namespace {

TEST(NatsClusterFixture, PlacesThreeReplicasAtTheFirstRequest) {
  std::string why;
  if (!testing::NatsServer::Available(&why)) GTEST_SKIP() << why;
  testing::NatsCluster cluster;
  ASSERT_TRUE(cluster.ok()) << cluster.error();
  const std::vector<std::string> urls = cluster.urls();
  std::vector<const char*> list;
  for (const std::string& u : urls) list.push_back(u.c_str());
  natsOptions* opts = nullptr;
  natsConnection* nc = nullptr;
  jsCtx* js = nullptr;
  ASSERT_EQ(natsOptions_Create(&opts), NATS_OK);
  ASSERT_EQ(natsOptions_SetServers(opts, list.data(), static_cast<int>(list.size())), NATS_OK);
  ASSERT_EQ(natsConnection_Connect(&nc, opts), NATS_OK);
  ASSERT_EQ(natsConnection_JetStream(&js, nc, nullptr), NATS_OK);
  // One request, no retry: placing three replicas needs all three servers as the meta group's
  // peers.
  jsStreamConfig cfg;
  jsStreamConfig_Init(&cfg);
  cfg.Name = "FIXTURE";
  const char* subjects[] = {"fixture.>"};
  cfg.Subjects = subjects;
  cfg.SubjectsLen = 1;
  cfg.Replicas = 3;
  jsStreamInfo* info = nullptr;
  jsErrCode code = static_cast<jsErrCode>(0);
  const natsStatus s = js_AddStream(&info, js, &cfg, nullptr, &code);
  EXPECT_EQ(s, NATS_OK) << natsStatus_GetText(s) << " (JetStream error " << code << ": "
                        << nats_GetLastError(nullptr) << ")\n"
                        << cluster.LogTails();
  if (info != nullptr) {
    EXPECT_NE(info->Cluster, nullptr);
    if (info->Cluster != nullptr) {
      EXPECT_EQ(info->Cluster->ReplicasLen, 2) << "a leader and two replicas";
    }
    jsStreamInfo_Destroy(info);
  }
  jsCtx_Destroy(js);
  natsConnection_Destroy(nc);
  natsOptions_Destroy(opts);
  const std::string logs = cluster.LogTails(5);
  for (size_t i = 0; i < cluster.size(); ++i) {
    EXPECT_NE(logs.find("/n" + std::to_string(i) + "/nats.log"), std::string::npos) << logs;
  }
}

}  // namespace
}  // namespace dvrouter
