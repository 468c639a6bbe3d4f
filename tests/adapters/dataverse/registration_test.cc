// `dvrouter register`: the real binary against the Dataverse simulator's registration tables
// (serviceendpoints, sdkmessages, sdkmessagefilters, sdkmessageprocessingsteps and their images):
// a dry run sends nothing and prints the requests; a real run creates the endpoint, steps and
// images; a second run updates them in place (idempotent); a changed config is applied; refused
// credentials fail with the service's answer.
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <string>
#include <vector>

#include "tests/support/http_client.h"
#include "tests/support/sim_process.h"
#include "tests/support/test_util.h"

namespace dvrouter {
namespace {

using testing::HttpClient;

struct RegisterRun {
  int exit_code = -1;
  std::string output;
};

// Runs `dvrouter register -c <tmp>/router.yaml [--dry-run]` to completion.
RegisterRun Register(const testing::TempDir& tmp, bool dry_run, int n) {
  const std::string log = tmp.path() + "/register-" + std::to_string(n) + ".log";
  testing::WriteFileOrDie(log, "");
  std::vector<std::string> args = {"register", "-c", tmp.path() + "/router.yaml"};
  if (dry_run) args.push_back("--dry-run");
  testing::ChildProcess child(DVROUTER_BINARY, args, log);
  const int status = child.Wait();
  RegisterRun r;
  r.exit_code = status >= 0 && WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  r.output = testing::ReadFileOrDie(log);
  return r;
}

void WriteConfig(const testing::TempDir& tmp, const testing::SimProcess& sim,
                 const std::string& secret_env, const std::string& filtering) {
  ::setenv("DVROUTER_REG_TEST_WEBHOOK", "hook-s3cret", 1);
  testing::WriteFileOrDie(
      tmp.path() + "/router.yaml",
      "ingress:\n"
      "  auth:\n"
      "    mode: http_header\n"
      "    header: x-dvrouter-key\n"
      "    secret: ${DVROUTER_REG_TEST_WEBHOOK}\n"
      "adapters:\n"
      "  lake:\n"
      "    type: lake\n"
      "  crm:\n"
      "    type: dataverse\n"
      "    source: lake\n"
      "    url: " +
          sim.url() +
          "\n"
          "    auth:\n"
          "      token_url: " +
          sim.url() +
          "/contoso.onmicrosoft.com/oauth2/v2.0/token\n"
          "      client_id: dvrouter\n"
          "      client_secret: ${" +
          secret_env +
          "}\n"
          "    status_column: new_integrationstatus\n"
          "    status_values: {completed: 3, failed: 4}\n"
          "routes:\n"
          "  - adapters: [lake]\n"
          "registration:\n"
          "  dataverse: crm\n"
          "  endpoint_name: dvrouter-test\n"
          "  webhook_url: https://router.example.com/webhooks/dataverse\n"
          "  steps:\n"
          "    - table: salesorder\n"
          "      messages: [Create, Update]\n"
          "      filtering_attributes: [" +
          filtering +
          "]\n"
          "      images: [{name: post, type: post, attributes: [name, totalamount]}]\n"
          "    - table: account\n"
          "      messages: [Delete]\n"
          "      mode: sync\n");
}

// A collection's rows, read with a token of the simulator's client.
std::string Rows(testing::SimProcess& sim, const std::string& collection) {
  HttpClient http(sim.port());
  const testing::HttpReply token =
      http.Post("/t/oauth2/v2.0/token",
                "grant_type=client_credentials&client_id=dvrouter&client_secret=reg-s3cret",
                {{"Content-Type", "application/x-www-form-urlencoded"}});
  const std::string access = testing::JsonStringField(token.body, "access_token");
  EXPECT_FALSE(access.empty()) << token.body;
  return http
      .Request("GET", "/api/data/v9.2/" + collection, "", {{"Authorization", "Bearer " + access}})
      .body;
}

size_t Count(const std::string& text, const std::string& what) {
  size_t n = 0;
  for (size_t at = text.find(what); at != std::string::npos; at = text.find(what, at + 1)) ++n;
  return n;
}

TEST(Register, ADryRunPrintsTheRequestsAndSendsNothing) {
  testing::TempDir tmp;
  testing::SimProcess sim(DVROUTER_DATAVERSE_SIM, "dataverse-sim", tmp,
                          {"--client", "dvrouter:reg-s3cret"});
  ASSERT_TRUE(sim.ready()) << sim.log();
  ::setenv("DVROUTER_REG_TEST_SECRET", "reg-s3cret", 1);
  WriteConfig(tmp, sim, "DVROUTER_REG_TEST_SECRET", "statuscode, totalamount");
  const RegisterRun r = Register(tmp, true, 1);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("else POST serviceendpoints"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("\"contract\":8,\"authtype\":5,\"authvalue\":\"***\""), std::string::npos)
      << r.output;
  EXPECT_EQ(r.output.find("hook-s3cret"), std::string::npos) << "the secret was printed";
  EXPECT_NE(r.output.find("\"name\":\"dvrouter-test: salesorder Update 40\""), std::string::npos);
  EXPECT_NE(r.output.find("\"filteringattributes\":\"statuscode,totalamount\""), std::string::npos);
  EXPECT_NE(r.output.find("\"name\":\"dvrouter-test: account Delete 40\",\"description\":"
                          "\"Sends the event to dvrouter\",\"stage\":40,\"mode\":0"),
            std::string::npos)
      << r.output;
  EXPECT_NE(r.output.find("\"imagetype\":1,\"messagepropertyname\":\"Id\""), std::string::npos);
  EXPECT_NE(r.output.find("dry run: nothing was sent"), std::string::npos);
  EXPECT_EQ(sim.Stat("requests"), 0);
  EXPECT_EQ(sim.Stat("tokens_issued"), 0);
}

TEST(Register, CreatesTheWebhookStepsAndImagesThenUpdatesThemInPlace) {
  testing::TempDir tmp;
  testing::SimProcess sim(DVROUTER_DATAVERSE_SIM, "dataverse-sim", tmp,
                          {"--client", "dvrouter:reg-s3cret"});
  ASSERT_TRUE(sim.ready()) << sim.log();
  ::setenv("DVROUTER_REG_TEST_SECRET", "reg-s3cret", 1);
  WriteConfig(tmp, sim, "DVROUTER_REG_TEST_SECRET", "statuscode");
  const RegisterRun first = Register(tmp, false, 1);
  ASSERT_EQ(first.exit_code, 0) << first.output;
  // 1 endpoint, 3 steps (salesorder Create and Update, account Delete), 2 images.
  EXPECT_NE(first.output.find("registered: 6 created, 0 updated"), std::string::npos)
      << first.output;
  const std::string endpoints = Rows(sim, "serviceendpoints");
  EXPECT_EQ(Count(endpoints, "\"serviceendpointid\""), 1u) << endpoints;
  EXPECT_NE(endpoints.find("\"authtype\":5"), std::string::npos);
  EXPECT_NE(endpoints.find(R"(<setting name=\"x-dvrouter-key\" value=\"hook-s3cret\"/>)"),
            std::string::npos)
      << endpoints;
  const std::string endpoint_id = testing::JsonStringField(endpoints, "serviceendpointid");
  std::string steps = Rows(sim, "sdkmessageprocessingsteps");
  EXPECT_EQ(Count(steps, "\"sdkmessageprocessingstepid\""), 3u) << steps;
  EXPECT_EQ(Count(steps, "\"_eventhandler_serviceendpoint_value\":\"" + endpoint_id + "\""), 3u)
      << steps;
  EXPECT_NE(steps.find("\"filteringattributes\":\"statuscode\""), std::string::npos);
  EXPECT_EQ(Count(Rows(sim, "sdkmessageprocessingstepimages"), "\"entityalias\":\"post\""), 2u);

  // Again, with another filtering attribute: everything is updated, nothing duplicated.
  WriteConfig(tmp, sim, "DVROUTER_REG_TEST_SECRET", "statuscode, totalamount");
  const RegisterRun second = Register(tmp, false, 2);
  ASSERT_EQ(second.exit_code, 0) << second.output;
  EXPECT_NE(second.output.find("registered: 0 created, 6 updated"), std::string::npos)
      << second.output;
  EXPECT_EQ(Count(Rows(sim, "serviceendpoints"), "\"serviceendpointid\""), 1u);
  steps = Rows(sim, "sdkmessageprocessingsteps");
  EXPECT_EQ(Count(steps, "\"sdkmessageprocessingstepid\""), 3u) << steps;
  EXPECT_NE(steps.find("\"filteringattributes\":\"statuscode,totalamount\""), std::string::npos);
  EXPECT_EQ(Count(Rows(sim, "sdkmessageprocessingstepimages"), "\"entityalias\":\"post\""), 2u);
}

TEST(Register, RefusedCredentialsFailWithTheServicesAnswer) {
  testing::TempDir tmp;
  testing::SimProcess sim(DVROUTER_DATAVERSE_SIM, "dataverse-sim", tmp,
                          {"--client", "dvrouter:reg-s3cret"});
  ASSERT_TRUE(sim.ready()) << sim.log();
  ::setenv("DVROUTER_REG_TEST_WRONG", "wrong", 1);
  WriteConfig(tmp, sim, "DVROUTER_REG_TEST_WRONG", "statuscode");
  const RegisterRun r = Register(tmp, false, 1);
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_NE(r.output.find("dvrouter: register: dataverse token"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("invalid_client"), std::string::npos) << r.output;
  EXPECT_EQ(sim.Stat("registrations"), 0);
}

TEST(Register, AStepOnATableTheOrganizationLacksFailsAndSaysSo) {
  testing::TempDir tmp;
  testing::SimProcess sim(DVROUTER_DATAVERSE_SIM, "dataverse-sim", tmp,
                          {"--client", "dvrouter:reg-s3cret", "--tables", "account,contact"});
  ASSERT_TRUE(sim.ready()) << sim.log();
  ::setenv("DVROUTER_REG_TEST_SECRET", "reg-s3cret", 1);
  WriteConfig(tmp, sim, "DVROUTER_REG_TEST_SECRET", "statuscode");  // salesorder steps
  const RegisterRun r = Register(tmp, false, 1);
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_NE(r.output.find("message Create is not available on table salesorder"), std::string::npos)
      << r.output;
  EXPECT_EQ(Count(Rows(sim, "sdkmessageprocessingsteps"), "\"sdkmessageprocessingstepid\""), 0u);
}

}  // namespace
}  // namespace dvrouter
