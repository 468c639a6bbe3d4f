#include "adapters/erp/erp_config.h"

#include <simdjson.h>

#include <ostream>

#include "adapters/common/http_client.h"
#include "adapters/common/http_config.h"
#include "router/common/json_template.h"
#include "router/config/section.h"

namespace dvrouter {

namespace {

Result<std::unique_ptr<AdapterSettings>> ParseErp(Section& a, const AdapterParseContext& ctx) {
  auto out = std::make_unique<ErpConfig>();
  const std::string& base_dir = ctx.base_dir;
  DV_TRY(ParseBaseUrl(a, "base_url", base_dir, &out->base_url, &out->ca_file));
  DV_TRY(a.DurationMs("connect_timeout", 100, 600'000, &out->connect_timeout_ms));
  DV_TRY(a.DurationMs("request_timeout", 100, 3'600'000, &out->request_timeout_ms));
  Section conc = a.Child("concurrency");
  DV_TRY(conc.Check());
  DV_TRY(conc.Count("max", 1, 4096, &out->max_concurrency));
  DV_TRY(conc.Bool("adaptive", &out->adaptive));
  DV_TRY(conc.RejectUnknown());

  Section auth = a.Child("auth");
  DV_TRY(auth.Check());
  ErpAuth& au = out->auth;
  DV_TRY(auth.Choice("mode", {"none", "basic", "api_key", "oauth2"}, &au.mode));
  if (au.mode == "none") {
  } else if (au.mode == "basic") {
    DV_TRY(auth.String("user", &au.user));
    if (au.user.empty()) return KeyError(auth.Path("user"), "missing: basic needs a user");
    DV_TRY(ReadSecret(auth, "password", base_dir, /*optional=*/false, &au.password));
  } else if (au.mode == "api_key") {
    DV_TRY(auth.String("header", &au.header));
    if (au.header.empty()) return KeyError(auth.Path("header"), "must name the key's header");
    DV_TRY(ReadSecret(auth, "key", base_dir, /*optional=*/false, &au.key));
  } else if (au.mode == "oauth2") {
    DV_TRY(ParseClientCredentials(auth, base_dir, &au.token_url, &au.client_id, &au.client_secret,
                                  &au.scope));
  }
  DV_TRY(auth.RejectUnknown());

  DV_TRY(a.Choice("profile", {"generic", "sap_odata"}, &out->profile));
  DV_TRY(a.String("csrf_path", &out->csrf_path));
  if (!out->csrf_path.starts_with("/")) return KeyError(a.Path("csrf_path"), "must start with '/'");
  Section as = a.Child("async");
  DV_TRY(as.Check());
  ErpAsync& aj = out->async;
  auto pointer = [&](const std::string& key, std::string* p) -> Status {
    DV_TRY(as.String(key, p));
    if (!p->starts_with("/"))
      return KeyError(as.Path(key), "must be a JSON pointer such as /status");
    return Status::Ok();
  };
  DV_TRY(pointer("status_pointer", &aj.status_pointer));
  DV_TRY(pointer("error_pointer", &aj.error_pointer));
  DV_TRY(as.Strings("completed", &aj.completed));
  DV_TRY(as.Strings("failed", &aj.failed));
  if (aj.completed.empty() || aj.failed.empty()) {
    return KeyError(as.Path(aj.completed.empty() ? "completed" : "failed"),
                    "must list the status values that mean it");
  }
  Section cb = as.Child("callback");
  DV_TRY(cb.Check());
  if (cb.Present()) {
    DV_TRY(ReadSecret(cb, "secret", base_dir, /*optional=*/false, &aj.callback_secret));
    DV_TRY(cb.String("public_url", &aj.public_url));
    while (aj.public_url.ends_with("/")) aj.public_url.pop_back();
    if (!aj.public_url.empty() && !aj.public_url.starts_with("https://") &&
        !aj.public_url.starts_with("http://")) {
      return KeyError(cb.Path("public_url"), "must be the router's http(s) base URL");
    }
  }
  DV_TRY(cb.RejectUnknown());
  Section poll = as.Child("poll");
  DV_TRY(poll.Check());
  if (poll.Present()) {
    aj.poll_interval_ms = 5000;
    DV_TRY(poll.String("url_pointer", &aj.poll_url_pointer));
    if (!aj.poll_url_pointer.starts_with("/")) {
      return KeyError(poll.Path("url_pointer"), "must be a JSON pointer such as /statusUrl");
    }
    DV_TRY(poll.DurationMs("interval", 10, 3'600'000, &aj.poll_interval_ms));
    DV_TRY(poll.DurationMs("timeout", 1000, 30ull * 24 * 3'600'000, &aj.poll_timeout_ms));
    std::vector<std::string> origins;
    DV_TRY(poll.Strings("allowed_origins", &origins));
    for (const std::string& o : origins) {
      Result<Url> u = ParseUrl(o);
      if (!u.ok() || u->target != "/") {
        return KeyError(poll.Path("allowed_origins"),
                        "'" + o + "' is not an origin such as https://jobs.example.com:8443");
      }
      aj.poll_allowed_origins.push_back(CanonicalOrigin(*u));
    }
  }
  DV_TRY(poll.RejectUnknown());
  DV_TRY(as.RejectUnknown());

  YAML::Node reqs = a.Raw("requests", "list of requests");
  if (!reqs || reqs.IsNull() || !reqs.IsSequence() || reqs.size() == 0) {
    return KeyError(a.Path("requests"),
                    "missing: a list of request templates (method, path, body, ...)");
  }
  for (size_t i = 0; i < reqs.size(); ++i) {
    Section r = a.Item(reqs[i], ".requests[" + std::to_string(i) + "]", ".requests[]");
    DV_TRY(r.Check());
    if (!reqs[i].IsMap()) return KeyError(r.Name(), "must be a mapping");
    ErpRequest q;
    q.name = "request-" + std::to_string(i);
    DV_TRY(r.String("name", &q.name));
    DV_TRY(r.Strings("tables", &q.tables));
    for (std::string& t : q.tables) t = Lower(t);
    DV_TRY(r.Strings("messages", &q.messages));
    for (std::string& m : q.messages) m = Lower(m);
    DV_TRY(r.Choice("method", {"POST", "PUT", "PATCH", "DELETE"}, &q.method));
    DV_TRY(r.String("path", &q.path));
    if (!q.path.starts_with("/")) return KeyError(r.Path("path"), "must start with '/'");
    if (Result<JsonTemplate> t = JsonTemplate::Compile(q.path); !t.ok()) {
      return KeyError(r.Path("path"), std::string(t.status().message()));
    }
    YAML::Node headers = r.Raw("headers", "mapping of name: value");
    if (headers && !headers.IsNull()) {
      if (!headers.IsMap()) return KeyError(r.Path("headers"), "must be a mapping of name: value");
      for (const auto& kv : headers) {
        if (!kv.second.IsScalar()) {
          return KeyError(r.Path("headers") + "." + kv.first.as<std::string>(), "must be a string");
        }
        q.headers.emplace_back(kv.first.as<std::string>(), kv.second.Scalar());
      }
    }
    DV_TRY(r.String("body", &q.body));
    if (!q.body.empty()) {
      Result<JsonTemplate> t = JsonTemplate::Compile(q.body);
      if (!t.ok()) return KeyError(r.Path("body"), std::string(t.status().message()));
      // Placeholders are JSON values: the body must be JSON with any value in them.
      for (const char* probe : {"null", "\"x\""}) {
        std::string rendered;
        t->Render([&](std::string_view, std::string* o) { *o += probe; }, &rendered);
        simdjson::dom::parser parser;
        simdjson::dom::element e;
        if (auto err = parser.parse(rendered).get(e)) {
          return KeyError(r.Path("body"),
                          std::string("not JSON once placeholders are filled (") +
                              simdjson::error_message(err) +
                              "); write placeholders bare, without quotes: \"id\": {{event.id}}");
        }
      }
    }
    YAML::Node capture = r.Raw("capture", "mapping of name: JSON pointer");
    if (capture && !capture.IsNull()) {
      if (!capture.IsMap()) {
        return KeyError(r.Path("capture"), "must be a mapping of name: JSON pointer");
      }
      for (const auto& kv : capture) {
        const std::string name = kv.first.as<std::string>();
        if (!kv.second.IsScalar() ||
            !(kv.second.Scalar().empty() || kv.second.Scalar().starts_with("/"))) {
          return KeyError(r.Path("capture") + "." + name,
                          "must be a JSON pointer such as /orderNumber");
        }
        q.capture.emplace_back(name, kv.second.Scalar());
      }
    }
    DV_TRY(r.RejectUnknown());
    out->requests.push_back(std::move(q));
  }
  return std::unique_ptr<AdapterSettings>(std::move(out));
}

// Together these read every key: each auth mode, callbacks and polling.
constexpr std::string_view kExamples[] = {
    R"(base_url: https://erp.example.com/api
auth: {mode: basic, user: dvrouter, password: "${ERP_PASSWORD}"}
async:
  callback: {secret: "${ERP_CALLBACK_SECRET}", public_url: https://router.example.com}
  poll: {url_pointer: /statusUrl, interval: 5s, allowed_origins: [https://jobs.example.com]}
requests:
  - name: order
    tables: [salesorder]
    messages: [Create]
    path: /orders/{{target.salesorderid}}
    headers: {X-Source: dvrouter}
    body: '{"id": {{event.id}}}'
    capture: {order_number: /orderNumber}
)",
    R"(base_url: https://erp.example.com
auth: {mode: api_key, header: X-API-Key, key: "${ERP_KEY}"}
requests: [{path: /events, body: '{{target}}'}]
)",
    R"(base_url: https://erp.example.com
auth: {mode: oauth2, token_url: https://login.example.com/token, client_id: dvrouter,
       client_secret: "${ERP_CLIENT_SECRET}", scope: erp}
requests: [{path: /events}]
)",
};

}  // namespace

void ErpConfig::Describe(const std::string& k, std::ostream& o) const {
  o << k << "base_url: " << base_url << ", profile " << profile << ", auth " << auth.mode
    << ", concurrency " << max_concurrency << (adaptive ? " (adaptive)" : "") << "\n";
  for (const ErpRequest& q : requests) {
    o << k << "request " << q.name << ": " << q.method << " " << q.path << " for tables "
      << (q.tables.empty() ? "*" : q.tables[0] + (q.tables.size() > 1 ? ",..." : "")) << "\n";
  }
}

const AdapterKind kErpKind{.type = "erp", .parse = &ParseErp, .examples = kExamples};

}  // namespace dvrouter
