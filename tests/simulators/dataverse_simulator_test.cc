// The Dataverse simulator as an organization with registered asynchronous steps: the simulator
// runs as a child process; a receiver (dvrouter's own HTTP server, in this process) is
// registered through the simulator's Web API as a serviceendpoint with steps. Checks that
// POST /_changes posts the webhooks Dataverse would (body fields the router's decoder reads,
// headers, WebhookKey), the delivery rule (one retry on 503 only, failures and lost answers
// becoming failed asyncoperations named by the body's OperationId), the asyncoperations queries
// (filters, ordering, paging, DELETE), change tracking (full sync, delta with an update, a create
// and a delete, expiry) and the malformed answers tests can ask for.
#include <gtest/gtest.h>
#include <simdjson.h>

#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "router/common/encoding.h"
#include "router/decode/decode.h"
#include "router/ingress/server.h"
#include "tests/support/http_client.h"
#include "tests/support/sim_process.h"
#include "tests/support/test_util.h"

namespace dvrouter {
namespace {

using testing::HttpClient;
using testing::HttpReply;

constexpr const char* kAccount1 = "a0000001-0000-4000-8000-000000000001";
constexpr const char* kAccount2 = "a0000001-0000-4000-8000-000000000002";
constexpr const char* kAccount3 = "a0000001-0000-4000-8000-000000000003";

// A webhook receiver on a free loopback port: records every request and answers with the
// scripted statuses, then 200. A scripted -N answers 200 only after N ms (from another thread).
class Receiver final : public HttpHandler {
 public:
  struct Request {
    std::string target, body;
    std::map<std::string, std::string> headers;
  };

  Receiver() : runtime_(1), server_(&runtime_, this, HttpServerLimits{}) {
    runtime_.Start();
    const Status st = server_.Listen(Endpoint{"127.0.0.1", 0});
    EXPECT_TRUE(st.ok()) << st.ToString();
  }
  ~Receiver() override {
    for (std::thread& t : late_) t.join();
    server_.StopAccepting();
    runtime_.Stop();
  }
  std::string url() const {
    return "http://127.0.0.1:" + std::to_string(server_.port()) + "/webhooks/dataverse";
  }
  // The body of every answer (default "{}").
  void AnswerBody(std::string body) {
    std::lock_guard<std::mutex> lock(mu_);
    body_ = std::move(body);
  }
  void Script(std::vector<int> statuses) {
    std::lock_guard<std::mutex> lock(mu_);
    script_.insert(script_.end(), statuses.begin(), statuses.end());
  }
  std::vector<Request> requests() {
    std::lock_guard<std::mutex> lock(mu_);
    return requests_;
  }

  void Handle(const HttpRequestView& req, HttpConnectionState*, HttpExchange* exchange,
              int) override {
    Request r{std::string(req.target), std::string(req.body()), {}};
    for (const char* h :
         {"x-ms-dynamics-entity-name", "x-ms-dynamics-request-name", "x-ms-dynamics-organization",
          "x-ms-correlation-request-id", "x-request-id", "x-dvrouter-key"}) {
      if (req.headers->has(h)) r.headers[h] = std::string(req.headers->get(h));
    }
    HttpResponse response;
    {
      std::lock_guard<std::mutex> lock(mu_);
      requests_.push_back(std::move(r));
      if (!script_.empty()) {
        response.status = script_.front();
        script_.pop_front();
      }
      response.body = body_;
    }
    if (response.status < 0) {
      const int delay_ms = -response.status;
      response.status = 200;
      std::lock_guard<std::mutex> lock(mu_);
      late_.emplace_back([exchange, delay_ms, response] {
        std::this_thread::sleep_for(std::chrono::milliseconds(delay_ms));
        exchange->Respond(response);
      });
      return;
    }
    exchange->Respond(std::move(response));
  }

 private:
  std::mutex mu_;
  std::deque<int> script_;
  std::string body_ = "{}";
  std::vector<Request> requests_;
  std::vector<std::thread> late_;
  IoRuntime runtime_;
  HttpServer server_;
};

// A member of a JSON object as text: strings unquoted, other values as JSON; "" if absent.
std::string Field(simdjson::dom::element el, const char* key) {
  simdjson::dom::element v;
  if (el[key].get(v) != simdjson::SUCCESS) return "";
  std::string_view s;
  if (v.get(s) == simdjson::SUCCESS) return std::string(s);
  return simdjson::minify(v);
}

// The `value` array's members `key`, in order.
std::vector<std::string> Column(const std::string& body, const char* key) {
  simdjson::dom::parser parser;
  simdjson::dom::array rows;
  std::vector<std::string> out;
  if (parser.parse(body).at_key("value").get(rows) != simdjson::SUCCESS) {
    ADD_FAILURE() << "no value array: " << body;
    return out;
  }
  for (simdjson::dom::element row : rows) out.push_back(Field(row, key));
  return out;
}

std::string Top(const std::string& body, const char* key) {
  simdjson::dom::parser parser;
  simdjson::dom::element root;
  if (parser.parse(body).get(root) != simdjson::SUCCESS) return "";
  return Field(root, key);
}

class DataverseSimProcess : public ::testing::Test {
 protected:
  DataverseSimProcess()
      : sim_(DVROUTER_DATAVERSE_SIM, "dataverse-sim", tmp_,
             {"--client", "dvrouter:s3cret", "--webhook-timeout-ms", "3000", "--change-tracking",
              "account", "--acked-log", tmp_.path() + "/acked.log"}) {}

  void SetUp() override {
    ASSERT_TRUE(sim_.ready()) << sim_.log();
    const HttpReply token =
        HttpClient(sim_.port())
            .Post("/t/oauth2/v2.0/token",
                  "grant_type=client_credentials&client_id=dvrouter&client_secret=s3cret",
                  {{"Content-Type", "application/x-www-form-urlencoded"}});
    token_ = testing::JsonStringField(token.body, "access_token");
    ASSERT_FALSE(token_.empty()) << token.body;
  }

  HttpReply Api(const std::string& method, const std::string& resource,
                const std::string& body = "", std::map<std::string, std::string> headers = {}) {
    headers["Authorization"] = "Bearer " + token_;
    if (!body.empty()) headers["Content-Type"] = "application/json";
    return HttpClient(sim_.port()).Request(method, "/api/data/v9.2/" + resource, body, headers);
  }
  // A GET of an absolute link the simulator gave (nextLink, deltaLink).
  HttpReply Follow(const std::string& link, const std::string& prefer) {
    const std::string prefix = sim_.url();
    EXPECT_EQ(link.substr(0, prefix.size()), prefix) << link;
    return HttpClient(sim_.port())
        .Request("GET", link.substr(prefix.size()), "",
                 {{"Authorization", "Bearer " + token_}, {"Prefer", prefer}});
  }
  std::string Id(const HttpReply& r, const char* field) {
    EXPECT_EQ(r.status / 100, 2) << r.body;
    return testing::JsonStringField(r.body, field);
  }

  // `url` as a WebhookKey serviceendpoint (made on the first call) and a step on table/message.
  std::string Register(const std::string& url, const std::string& table, const std::string& message,
                       int mode, const std::string& filtering = "") {
    if (endpoint_.empty()) {
      endpoint_ = Id(Api("POST", "serviceendpoints",
                         R"({"name":"dvrouter-test","url":")" + url +
                             R"(","contract":8,"authtype":4,"authvalue":"hook-key"})"),
                     "serviceendpointid");
    }
    const std::string message_id = Id(Api("GET", "sdkmessages?$select=sdkmessageid&$filter=" +
                                                     UrlEncode("name eq '" + message + "'")),
                                      "sdkmessageid");
    const std::string filter_id =
        Id(Api("GET", "sdkmessagefilters?$select=sdkmessagefilterid&$filter=" +
                          UrlEncode("sdkmessageid/sdkmessageid eq " + message_id +
                                    " and primaryobjecttypecode eq '" + table + "'")),
           "sdkmessagefilterid");
    const std::string name =
        "dvrouter-test: " + table + " " + message + " 40" + (mode == 0 ? " sync" : "");
    return Id(
        Api("POST", "sdkmessageprocessingsteps",
            R"({"name":")" + name + R"(","stage":40,"mode":)" + std::to_string(mode) +
                R"(,"rank":1,"filteringattributes":")" + filtering +
                "\",\"eventhandler_serviceendpoint@odata.bind\":\"/serviceendpoints(" + endpoint_ +
                ")\",\"sdkmessageid@odata.bind\":\"/sdkmessages(" + message_id +
                ")\",\"sdkmessagefilterid@odata.bind\":\"/sdkmessagefilters(" + filter_id + ")\"}"),
        "sdkmessageprocessingstepid");
  }

  HttpReply Changes(const std::string& json) {
    return HttpClient(sim_.port()).Post("/_changes", json);
  }
  static std::string Create(const char* id, const std::string& name) {
    return R"({"op":"create","table":"account","id":")" + std::string(id) +
           R"(","columns":{"name":")" + name + R"("}})";
  }
  static std::string Update(const char* id, const std::string& name) {
    return R"({"op":"update","table":"account","id":")" + std::string(id) +
           R"(","columns":{"name":")" + name + R"("}})";
  }
  std::string FailedJobs(const std::string& filter, const std::string& prefer = "") {
    const HttpReply r =
        Api("GET",
            "asyncoperations?$select=asyncoperationid,completedon,_regardingobjectid_value&"
            "$filter=" +
                UrlEncode(filter) + "&$orderby=" + UrlEncode("completedon asc"),
            "",
            prefer.empty() ? std::map<std::string, std::string>{}
                           : std::map<std::string, std::string>{{"Prefer", prefer}});
    EXPECT_EQ(r.status, 200) << filter << ": " << r.body;
    return r.body;
  }

  testing::TempDir tmp_;
  testing::SimProcess sim_;
  std::string token_, endpoint_;
};

TEST_F(DataverseSimProcess, ChangesPostTheWebhooksOfTheRegisteredSteps) {
  Receiver receiver;
  const std::string create_step = Register(receiver.url(), "account", "Create", 1);
  const std::string update_step = Register(receiver.url(), "account", "Update", 1, "name,revenue");
  const std::string delete_step = Register(receiver.url(), "account", "Delete", 1);
  Register(receiver.url(), "contact", "Update", 1);  // another table: never fires here
  const HttpReply r = Changes(
      "[" + std::string(R"({"op":"create","table":"account","id":")") + kAccount1 +
      R"(","columns":{"name":"Contoso","revenue":12.5,"active":true,"closedon":)"
      R"("2026-12-05T01:02:03Z","parentaccountid":{"@odata.type":"EntityReference","id":")" +
      kAccount2 + R"(","logicalname":"account"}}},)" + Update(kAccount1, "Contoso Ltd") + "," +
      R"({"op":"update","table":"account","id":")" + kAccount1 +
      R"(","columns":{"telephone1":"555"}},)"  // not a filtering attribute: no webhook
      R"({"op":"delete","table":"account","id":")" +
      kAccount1 + R"("}])");
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(testing::JsonNumber(r.body, "changes"), 4) << r.body;
  EXPECT_EQ(testing::JsonNumber(r.body, "delivered"), 3) << r.body;
  EXPECT_EQ(testing::JsonNumber(r.body, "failed_jobs"), 0) << r.body;

  const std::vector<Receiver::Request> got = receiver.requests();
  ASSERT_EQ(got.size(), 3u);
  const char* messages[] = {"Create", "Update", "Delete"};
  const std::string steps[] = {create_step, update_step, delete_step};
  Decoder decoder(1 << 20);
  std::set<std::string> operations;
  for (size_t i = 0; i < got.size(); ++i) {
    SCOPED_TRACE(messages[i]);
    EXPECT_EQ(got[i].target, "/webhooks/dataverse?code=hook-key");
    EXPECT_EQ(got[i].headers.at("x-ms-dynamics-entity-name"), "account");
    EXPECT_EQ(got[i].headers.at("x-ms-dynamics-request-name"), messages[i]);
    EXPECT_FALSE(got[i].headers.at("x-ms-dynamics-organization").empty());
    EventHeader h;
    const Status st =
        decoder.Decode(got[i].body.data(), got[i].body.size(), got[i].body.size(), &h);
    ASSERT_TRUE(st.ok()) << st.ToString() << "\n" << got[i].body;
    EXPECT_EQ(h.message_name, messages[i]);
    EXPECT_EQ(h.primary_entity_name, "account");
    EXPECT_EQ(h.primary_entity_id, kAccount1);
    EXPECT_EQ(h.owning_extension_id, steps[i]);
    EXPECT_EQ(h.mode, 1);
    EXPECT_EQ(h.stage, 40);
    EXPECT_EQ(h.depth, 1);
    EXPECT_TRUE(h.request_id.empty());
    EXPECT_EQ(h.correlation_id, got[i].headers.at("x-ms-correlation-request-id"));
    EXPECT_GT(h.operation_created_on_ms, 0);
    operations.insert(h.operation_id);
    EXPECT_NE(got[i].body.find(
                  R"("LogicalName":"sdkmessageprocessingstep","Name":"dvrouter-test: account )" +
                  std::string(messages[i]) + " 40\""),
              std::string::npos);
  }
  EXPECT_EQ(operations.size(), 3u) << "every OperationId is fresh";
  const std::string& create = got[0].body;
  EXPECT_NE(create.find(R"({"key":"name","value":"Contoso"})"), std::string::npos) << create;
  EXPECT_NE(create.find(R"({"key":"revenue","value":12.5})"), std::string::npos);
  EXPECT_NE(create.find(R"({"key":"active","value":true})"), std::string::npos);
  EXPECT_NE(create.find(R"({"key":"closedon","value":"\/Date(1796432523000)\/"})"),
            std::string::npos);
  EXPECT_NE(create.find(std::string(R"({"key":"parentaccountid","value":{"__type":)"
                                    R"("EntityReference:http:\/\/schemas.microsoft.com\/xrm\/)"
                                    R"(2011\/Contracts","Id":")") +
                        kAccount2 + R"(","KeyAttributes":[],"LogicalName":"account","Name":null)"),
            std::string::npos);
  EXPECT_NE(create.find(R"("OutputParameters":[{"key":"id","value":")" + std::string(kAccount1)),
            std::string::npos);
  EXPECT_NE(got[1].body.find(R"({"key":"name","value":"Contoso Ltd"})"), std::string::npos);
  EXPECT_NE(got[2].body.find(R"({"key":"Target","value":{"__type":"EntityReference:)"),
            std::string::npos)
      << got[2].body;

  // The row went and left a tombstone; a sync step's body carries its RequestId.
  EXPECT_EQ(Column(sim_.Get("/_rows?set=accounts"), "accountid").size(), 0u);
  EXPECT_EQ(Column(sim_.Get("/_deleted?set=accounts"), "id"), std::vector<std::string>{kAccount1});
  Register(receiver.url(), "contact", "Create", 0);
  ASSERT_EQ(Changes(R"([{"op":"create","table":"contact","id":")" + std::string(kAccount3) +
                    R"(","columns":{"firstname":"Ann"}}])")
                .status,
            200);
  ASSERT_EQ(receiver.requests().size(), 4u);
  EventHeader h;
  const std::string body = receiver.requests()[3].body;
  ASSERT_TRUE(decoder.Decode(body.data(), body.size(), body.size(), &h).ok());
  EXPECT_EQ(h.mode, 0);
  EXPECT_EQ(h.request_id, h.operation_id);
  EXPECT_EQ(sim_.Stat("webhooks_delivered"), 4);
}

TEST_F(DataverseSimProcess, A503IsRetriedOnceThenTheJobFailsNamedByTheOperationId) {
  Receiver receiver;
  const std::string step = Register(receiver.url(), "account", "Create", 1);
  receiver.Script({503, 503});
  const HttpReply r = Changes("[" + Create(kAccount1, "A") + "]");
  ASSERT_EQ(r.status, 200);
  EXPECT_EQ(testing::JsonNumber(r.body, "failed_jobs"), 1) << r.body;
  const auto got = receiver.requests();
  ASSERT_EQ(got.size(), 2u) << "one retry only";
  EXPECT_EQ(got[0].body, got[1].body) << "the retry posts the same context";
  EventHeader h;
  Decoder decoder(1 << 20);
  ASSERT_TRUE(decoder.Decode(got[0].body.data(), got[0].body.size(), got[0].body.size(), &h).ok());

  const HttpReply jobs = Api(
      "GET", "asyncoperations?$filter=" + UrlEncode("statuscode eq 31 and operationtype eq 1 and "
                                                    "_owningextensionid_value eq " +
                                                    step));
  ASSERT_EQ(jobs.status, 200) << jobs.body;
  EXPECT_EQ(Column(jobs.body, "asyncoperationid"), std::vector<std::string>{h.operation_id});
  EXPECT_EQ(Column(jobs.body, "_regardingobjectid_value"), std::vector<std::string>{kAccount1});
  EXPECT_EQ(Column(jobs.body, "messagename"), std::vector<std::string>{"Create"});
  EXPECT_EQ(Column(jobs.body, "primaryentitytype"), std::vector<std::string>{"account"});
  EXPECT_EQ(Column(jobs.body, "name"),
            std::vector<std::string>{"dvrouter-test: account Create 40"});
  EXPECT_EQ(Column(jobs.body, "statecode"), std::vector<std::string>{"3"});
  EXPECT_NE(Column(jobs.body, "friendlymessage")[0].find("503"), std::string::npos) << jobs.body;
  EXPECT_EQ(Column(jobs.body, "completedon")[0].size(), 20u) << jobs.body;

  // A 503 then a 200 is delivered: no job.
  receiver.Script({503});
  const HttpReply again = Changes("[" + Update(kAccount1, "B") + "]");
  EXPECT_EQ(testing::JsonNumber(again.body, "delivered"), 0) << "no Update step";
  Register(receiver.url(), "account", "Update", 1);
  const HttpReply third = Changes("[" + Update(kAccount1, "C") + "]");
  EXPECT_EQ(testing::JsonNumber(third.body, "delivered"), 1) << third.body;
  EXPECT_EQ(sim_.Stat("failed_jobs"), 1);
  EXPECT_EQ(sim_.Stat("webhooks_posted"), 4);
}

TEST_F(DataverseSimProcess, A500IsNotRetriedAndASyncStepMakesNoJob) {
  Receiver receiver;
  Register(receiver.url(), "account", "Create", 1);
  Register(receiver.url(), "account", "Update", 0);
  receiver.Script({500, 502, 502});
  ASSERT_EQ(Changes("[" + Create(kAccount1, "A") + "," + Update(kAccount1, "B") + "]").status, 200);
  EXPECT_EQ(receiver.requests().size(), 3u) << "500 once; 502 twice";
  EXPECT_EQ(sim_.Stat("webhooks_failed"), 2);
  EXPECT_EQ(sim_.Stat("failed_jobs"), 1) << "the sync step's failure is no job";
  const std::string jobs = FailedJobs("statuscode eq 31");
  EXPECT_NE(Column(jobs, "asyncoperationid")[0], "");
  EXPECT_EQ(Column(jobs, "_regardingobjectid_value"), std::vector<std::string>{kAccount1});
  // Dataverse would roll the sync change back; the simulator keeps it.
  EXPECT_NE(sim_.Get("/_rows?set=accounts").find("\"name\":\"B\""), std::string::npos);
}

TEST_F(DataverseSimProcess, AStoppedReceiverOrWebhooksOffMakeFailedJobs) {
  auto receiver = std::make_unique<Receiver>();
  const std::string step = Register(receiver->url(), "account", "Create", 1);
  ASSERT_EQ(Changes("[" + Create(kAccount1, "A") + "]").status, 200);
  receiver.reset();
  HttpReply r = Changes("[" + Create(kAccount2, "B") + "," + Create(kAccount3, "C") + "]");
  ASSERT_EQ(r.status, 200);
  EXPECT_EQ(testing::JsonNumber(r.body, "failed_jobs"), 2) << r.body;
  std::string jobs = FailedJobs("_owningextensionid_value eq " + step);
  EXPECT_EQ(Column(jobs, "_regardingobjectid_value"),
            (std::vector<std::string>{kAccount2, kAccount3}));

  sim_.Control("webhooks=0");
  const int64_t posted = sim_.Stat("webhooks_posted");
  r = Changes(R"([{"op":"delete","table":"account","id":")" + std::string(kAccount1) + R"("}])");
  EXPECT_EQ(testing::JsonNumber(r.body, "failed_jobs"), 0) << "no Delete step";
  Register("", "account", "Delete", 1);  // on the endpoint registered first, now gone
  r = Changes(R"([{"op":"delete","table":"account","id":")" + std::string(kAccount2) + R"("}])");
  EXPECT_EQ(testing::JsonNumber(r.body, "failed_jobs"), 1) << r.body;
  EXPECT_EQ(sim_.Stat("webhooks_posted"), posted) << "nothing is posted with webhooks=0";
  EXPECT_EQ(sim_.Stat("failed_jobs"), 3);
  EXPECT_EQ(Column(sim_.Get("/_rows?set=accounts"), "accountid"),
            std::vector<std::string>{kAccount3})
      << "changes still apply";
}

TEST_F(DataverseSimProcess, AnAnswerLaterThanTheTimeoutFailsTheJob) {
  testing::SimProcess quick(DVROUTER_DATAVERSE_SIM, "dataverse-sim", tmp_,
                            {"--client", "dvrouter:s3cret", "--webhook-timeout-ms", "200"});
  ASSERT_TRUE(quick.ready()) << quick.log();
  Receiver receiver;
  // Registered through the quick simulator's own Web API (the fixture's helpers talk to sim_).
  const HttpReply token =
      HttpClient(quick.port())
          .Post("/t/oauth2/v2.0/token",
                "grant_type=client_credentials&client_id=dvrouter&client_secret=s3cret",
                {{"Content-Type", "application/x-www-form-urlencoded"}});
  const std::string access = testing::JsonStringField(token.body, "access_token");
  auto api = [&](const std::string& method, const std::string& resource, const std::string& body) {
    return HttpClient(quick.port())
        .Request(method, "/api/data/v9.2/" + resource, body,
                 {{"Authorization", "Bearer " + access}, {"Content-Type", "application/json"}});
  };
  const std::string endpoint =
      testing::JsonStringField(api("POST", "serviceendpoints",
                                   R"({"name":"late","url":")" + receiver.url() +
                                       R"(","contract":8,"authtype":4,)"
                                       R"("authvalue":"k"})")
                                   .body,
                               "serviceendpointid");
  const std::string message = testing::JsonStringField(
      api("GET", "sdkmessages?$filter=" + UrlEncode("name eq 'Create'"), "").body, "sdkmessageid");
  const std::string filter = testing::JsonStringField(
      api("GET",
          "sdkmessagefilters?$filter=" + UrlEncode("sdkmessageid/sdkmessageid eq " + message +
                                                   " and primaryobjecttypecode eq 'account'"),
          "")
          .body,
      "sdkmessagefilterid");
  ASSERT_EQ(api("POST", "sdkmessageprocessingsteps",
                "{\"name\":\"late\",\"stage\":40,\"mode\":1,\"rank\":1,"
                "\"eventhandler_serviceendpoint@odata.bind\":\"/serviceendpoints(" +
                    endpoint + ")\",\"sdkmessageid@odata.bind\":\"/sdkmessages(" + message +
                    ")\",\"sdkmessagefilterid@odata.bind\":\"/sdkmessagefilters(" + filter + ")\"}")
                .status,
            201);
  receiver.Script({-1000});
  const HttpReply r =
      HttpClient(quick.port()).Post("/_changes", "[" + Create(kAccount1, "A") + "]");
  EXPECT_EQ(testing::JsonNumber(r.body, "failed_jobs"), 1) << r.body;
  EXPECT_EQ(receiver.requests().size(), 1u) << "a timeout is not retried";
  const HttpReply jobs = api("GET", "asyncoperations", "");
  EXPECT_NE(jobs.body.find("did not answer within 200 ms"), std::string::npos) << jobs.body;
}

TEST_F(DataverseSimProcess, ALostAckDeliversTheBodyAndStillFailsTheJob) {
  Receiver receiver;
  Register(receiver.url(), "account", "Create", 1);
  sim_.Control("ack_lost=1");
  const HttpReply r = Changes("[" + Create(kAccount1, "A") + "," + Create(kAccount2, "B") + "]");
  EXPECT_EQ(testing::JsonNumber(r.body, "delivered"), 1) << r.body;
  EXPECT_EQ(testing::JsonNumber(r.body, "failed_jobs"), 1) << r.body;
  const auto got = receiver.requests();
  ASSERT_EQ(got.size(), 2u);
  const std::string operation = testing::JsonStringField(got[0].body, "OperationId");
  const std::string jobs = FailedJobs("statuscode eq 31");
  EXPECT_EQ(Column(jobs, "asyncoperationid"), std::vector<std::string>{operation});
}

TEST_F(DataverseSimProcess, TheAckedLogHoldsTheEventIdOfEveryPostAnswered2xx) {
  Receiver receiver;
  Register(receiver.url(), "account", "Create", 1);
  constexpr const char* kEventId = "0123456789abcdef0123456789abcdef";
  receiver.AnswerBody(std::string(R"({"status":"accepted","event_id":")") + kEventId +
                      R"(","seq":1})");
  receiver.Script({500});      // refused: not acknowledged
  sim_.Control("ack_lost=1");  // acknowledged, its answer lost on the way: acknowledged still
  const HttpReply r = Changes("[" + Create(kAccount1, "A") + "," + Create(kAccount2, "B") + "," +
                              Create(kAccount3, "C") + "]");
  EXPECT_EQ(testing::JsonNumber(r.body, "delivered"), 1) << r.body;
  EXPECT_EQ(testing::JsonNumber(r.body, "failed_jobs"), 2) << r.body;
  EXPECT_EQ(testing::ReadFileOrDie(tmp_.path() + "/acked.log"),
            std::string(kEventId) + "\n" + kEventId + "\n");
}

TEST_F(DataverseSimProcess, AsyncOperationsFilterOrderPageAndDelete) {
  Receiver receiver;
  const std::string creates = Register(receiver.url(), "account", "Create", 1);
  const std::string updates = Register(receiver.url(), "account", "Update", 1);
  sim_.Control("webhooks=0");
  const char* ids[] = {kAccount1, kAccount2, kAccount3};
  std::string batch;
  for (const char* id : ids) batch += (batch.empty() ? "" : ",") + Create(id, "A");
  for (const char* id : ids) batch += "," + Update(id, "B");
  ASSERT_EQ(testing::JsonNumber(Changes("[" + batch + "]").body, "failed_jobs"), 6);

  std::string all = FailedJobs("statuscode eq 31 and operationtype eq 1");
  const std::vector<std::string> completed = Column(all, "completedon");
  ASSERT_EQ(completed.size(), 6u);
  for (size_t i = 1; i < completed.size(); ++i) EXPECT_LT(completed[i - 1], completed[i]);
  EXPECT_EQ(
      Column(FailedJobs("_owningextensionid_value eq " + creates), "_regardingobjectid_value"),
      (std::vector<std::string>{kAccount1, kAccount2, kAccount3}));
  EXPECT_EQ(
      Column(FailedJobs("(_owningextensionid_value eq " + creates +
                        " or _owningextensionid_value eq " + updates + ") and statuscode eq 31"),
             "asyncoperationid"),
      Column(all, "asyncoperationid"));
  EXPECT_EQ(Column(FailedJobs("completedon gt " + completed[2]), "completedon"),
            (std::vector<std::string>{completed[3], completed[4], completed[5]}));
  EXPECT_EQ(Column(FailedJobs("completedon ge " + completed[2]), "completedon").size(), 4u);
  EXPECT_EQ(Column(FailedJobs("statuscode eq 30"), "completedon").size(), 0u);
  const HttpReply desc = Api("GET", "asyncoperations?$orderby=" + UrlEncode("completedon desc"));
  std::vector<std::string> reversed(completed.rbegin(), completed.rend());
  EXPECT_EQ(Column(desc.body, "completedon"), reversed);

  // Pages of 4 then 2, following nextLink; a job deleted after page one shifts nothing.
  std::string page = FailedJobs("statuscode eq 31", "odata.maxpagesize=4");
  std::vector<std::string> seen = Column(page, "asyncoperationid");
  ASSERT_EQ(seen.size(), 4u);
  const std::string next = Top(page, "@odata.nextLink");
  ASSERT_NE(next.find("$skiptoken="), std::string::npos) << page;
  EXPECT_NE(next.find("$filter=statuscode%20eq%2031"), std::string::npos) << next;
  const HttpReply deleted = Api("DELETE", "asyncoperations(" + seen[0] + ")");
  EXPECT_EQ(deleted.status, 204);
  EXPECT_EQ(Api("DELETE", "asyncoperations(" + seen[0] + ")").status, 404);
  const HttpReply second = Follow(next, "odata.maxpagesize=4");
  ASSERT_EQ(second.status, 200) << second.body;
  for (const std::string& id : Column(second.body, "asyncoperationid")) seen.push_back(id);
  EXPECT_EQ(Top(second.body, "@odata.nextLink"), "");
  EXPECT_EQ(seen, Column(all, "asyncoperationid"));
  EXPECT_EQ(Column(FailedJobs("statuscode eq 31"), "asyncoperationid").size(), 5u);
  EXPECT_EQ(sim_.Stat("jobs_deleted"), 1);
  const HttpReply one = Api("GET", "asyncoperations(" + seen[1] + ")");
  EXPECT_EQ(testing::JsonStringField(one.body, "asyncoperationid"), seen[1]) << one.body;

  // What Dataverse refuses, and its service protection.
  for (const std::string& bad :
       {std::string("statuscode eq 31 or"), std::string("nosuchfield eq 1"),
        std::string("contains(name,'x')"), std::string("completedon gt yesterday")}) {
    const HttpReply r = Api("GET", "asyncoperations?$filter=" + UrlEncode(bad));
    EXPECT_EQ(r.status, 400) << bad;
    EXPECT_EQ(testing::JsonStringField(r.body, "code"), "0x80060888") << r.body;
  }
  sim_.Control("throttle=1&retry_after=2");
  const HttpReply throttled = Api("GET", "asyncoperations");
  EXPECT_EQ(throttled.status, 429);
  EXPECT_EQ(throttled.headers.count("retry-after") ? throttled.headers.at("retry-after") : "", "2");
  EXPECT_GE(sim_.Stat("asyncoperation_queries"), 10);
}

TEST_F(DataverseSimProcess, ChangeTrackingFullSyncDeltaAndExpiry) {
  const std::string prefer = "odata.track-changes,odata.maxpagesize=2";
  ASSERT_EQ(Changes("[" + Create(kAccount1, "A") + "," + Create(kAccount2, "B") + "," +
                    Create(kAccount3, "C") + "]")
                .status,
            200);
  const HttpReply def = Api(
      "GET", "EntityDefinitions(LogicalName='account')?$select=EntitySetName,PrimaryIdAttribute");
  EXPECT_EQ(testing::JsonStringField(def.body, "EntitySetName"), "accounts") << def.body;
  EXPECT_EQ(testing::JsonStringField(def.body, "PrimaryIdAttribute"), "accountid");
  EXPECT_EQ(Api("GET", "EntityDefinitions(LogicalName='nosuch')").status, 404);
  const HttpReply row = Api("GET", std::string("accounts(") + kAccount1 + ")");
  EXPECT_GT(testing::JsonNumber(row.body, "versionnumber"), 0) << row.body;
  EXPECT_EQ(testing::JsonStringField(row.body, "createdon").size(), 20u) << row.body;

  // Full sync: two pages, then a delta link.
  HttpReply r = Api("GET", "accounts?$select=name", "", {{"Prefer", prefer}});
  ASSERT_EQ(r.status, 200) << r.body;
  std::vector<std::string> ids = Column(r.body, "accountid");
  EXPECT_EQ(ids.size(), 2u);
  EXPECT_EQ(Top(r.body, "@odata.deltaLink"), "");
  r = Follow(Top(r.body, "@odata.nextLink"), prefer);
  for (const std::string& id : Column(r.body, "accountid")) ids.push_back(id);
  EXPECT_EQ(std::set<std::string>(ids.begin(), ids.end()),
            (std::set<std::string>{kAccount1, kAccount2, kAccount3}));
  const std::string delta = Top(r.body, "@odata.deltaLink");
  EXPECT_NE(delta.find("/api/data/v9.2/accounts?$select=name&$deltatoken="), std::string::npos)
      << delta;
  EXPECT_NE(delta.find("%21"), std::string::npos) << delta;

  // An update, a delete and a create since then; the updated row twice: once in the delta.
  ASSERT_EQ(Changes("[" + Update(kAccount1, "A2") + "," + Update(kAccount1, "A3") + "," +
                    R"({"op":"delete","table":"account","id":")" + kAccount2 + R"("},)" +
                    Create("a0000001-0000-4000-8000-000000000004", "D") + "]")
                .status,
            200);
  r = Follow(delta, "odata.track-changes");
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(Column(r.body, "accountid"),
            (std::vector<std::string>{kAccount1, "", "a0000001-0000-4000-8000-000000000004"}))
      << r.body;
  EXPECT_EQ(Column(r.body, "name"), (std::vector<std::string>{"A3", "", "D"}));
  EXPECT_EQ(Column(r.body, "id"), (std::vector<std::string>{"", kAccount2, ""}));
  EXPECT_EQ(Column(r.body, "reason"), (std::vector<std::string>{"", "deleted", ""}));
  EXPECT_NE(r.body.find("/api/data/v9.2/$metadata#accounts/$deletedEntity"), std::string::npos);
  const std::string delta2 = Top(r.body, "@odata.deltaLink");
  r = Follow(delta2, "odata.track-changes");
  EXPECT_EQ(Column(r.body, "accountid").size(), 0u) << r.body;

  // Expiry, an untracked table, query options change tracking refuses; then tracking turned on.
  sim_.Control("expire_delta_tokens=1");
  r = Follow(delta2, "odata.track-changes");
  EXPECT_EQ(r.status, 400);
  EXPECT_EQ(testing::JsonStringField(r.body, "code"), "0x80044352") << r.body;
  r = Api("GET", "accounts?$select=name", "", {{"Prefer", "odata.track-changes"}});
  EXPECT_EQ(Column(r.body, "accountid").size(), 3u) << "a full sync works";
  r = Follow(Top(r.body, "@odata.deltaLink"), "odata.track-changes");
  EXPECT_EQ(r.status, 200) << "tokens issued after the expiry work";
  r = Api("GET", "accounts?$select=name&$filter=" + UrlEncode("name eq 'A'"), "",
          {{"Prefer", "odata.track-changes"}});
  EXPECT_EQ(r.status, 400);
  r = Api("GET", "contacts?$select=fullname", "", {{"Prefer", "odata.track-changes"}});
  EXPECT_EQ(r.status, 400);
  EXPECT_EQ(testing::JsonStringField(r.body, "code"), "0x80072491") << r.body;
  sim_.Control("change_tracking=contact");
  r = Api("GET", "contacts?$select=fullname", "", {{"Prefer", "odata.track-changes"}});
  EXPECT_EQ(r.status, 200) << r.body;
  EXPECT_GE(sim_.Stat("delta_queries"), 6);
}

TEST_F(DataverseSimProcess, MalformedAnswersOnDemandThenRecovery) {
  Receiver receiver;
  Register(receiver.url(), "account", "Create", 1);
  sim_.Control("webhooks=0");
  ASSERT_EQ(Changes("[" + Create(kAccount1, "A") + "]").status, 200);
  const std::string row = std::string("accounts(") + kAccount1 + ")";
  const std::map<std::string, std::string> track = {{"Prefer", "odata.track-changes"}};
  struct Route {
    std::string name, resource;
    std::map<std::string, std::string> headers;
    std::string field;  // what missing_field drops, bad_guid spoils
  };
  const Route routes[] = {{"asyncoperations", "asyncoperations", {}, "_regardingobjectid_value"},
                          {"rows", row, {}, "versionnumber"},
                          {"delta", "accounts?$select=name", track, "accountid"}};
  for (const Route& route : routes) {
    SCOPED_TRACE(route.name);
    const HttpReply good = Api("GET", route.resource, "", route.headers);
    ASSERT_EQ(good.status, 200) << good.body;
    ASSERT_NE(good.body.find("\"" + route.field + "\""), std::string::npos) << good.body;
    sim_.Control("malform=" + route.name + ":missing_field&count=2");
    for (int i = 0; i < 2; ++i) {
      const HttpReply r = Api("GET", route.resource, "", route.headers);
      EXPECT_EQ(r.status, 200);
      EXPECT_EQ(r.body.find("\"" + route.field + "\""), std::string::npos) << r.body;
    }
    const HttpReply recovered = Api("GET", route.resource, "", route.headers);
    EXPECT_NE(recovered.body.find("\"" + route.field + "\""), std::string::npos) << "recovered";
    sim_.Control("malform=" + route.name + ":bad_guid");
    const std::string bad = Api("GET", route.resource, "", route.headers).body;
    EXPECT_NE(bad.find("\"not-a-guid\""), std::string::npos) << bad;
    sim_.Control("malform=" + route.name + ":not_json");
    HttpReply r = Api("GET", route.resource, "", route.headers);
    EXPECT_EQ(r.status, 200);
    EXPECT_EQ(r.body.front(), '<');
    sim_.Control("malform=" + route.name + ":status_500");
    EXPECT_EQ(Api("GET", route.resource, "", route.headers).status, 500);
    sim_.Control("malform=" + route.name + ":truncated");
    r = Api("GET", route.resource, "", route.headers);
    simdjson::dom::parser parser;
    EXPECT_NE(parser.parse(r.body).error(), simdjson::SUCCESS) << r.body;
    EXPECT_EQ(Api("GET", route.resource, "", route.headers).status, 200);
  }
  EXPECT_EQ(HttpClient(sim_.port()).Post("/_control?malform=rows:nonsense", "").status, 400);
}

}  // namespace
}  // namespace dvrouter
