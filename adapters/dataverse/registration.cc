#include "adapters/dataverse/registration.h"

#include <simdjson.h>

#include <optional>
#include <string>

#include "router/common/encoding.h"
#include "router/common/json.h"

namespace dvrouter {

namespace {

std::string Quote(const std::string& s) {
  std::string out;
  AppendJsonString(&out, s);
  return out;
}

// An OData string literal: single quotes doubled.
std::string ODataString(const std::string& s) {
  std::string out = "'";
  for (char c : s) {
    out += c;
    if (c == '\'') out += '\'';
  }
  return out + "'";
}

std::string XmlEscape(const std::string& s) {
  std::string out;
  for (char c : s) {
    switch (c) {
      case '&':
        out += "&amp;";
        break;
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '"':
        out += "&quot;";
        break;
      default:
        out += c;
    }
  }
  return out;
}

std::string Join(const std::vector<std::string>& v) {
  std::string out;
  for (const std::string& s : v) out += (out.empty() ? "" : ",") + s;
  return out;
}

class Registrar {
 public:
  Registrar(WebApiClient* web, bool dry_run, std::ostream& out)
      : web_(web), dry_(dry_run), out_(out) {}

  // The id of the one row of `collection` matching `filter`, nullopt if none.
  Result<std::optional<std::string>> Lookup(const std::string& collection,
                                            const std::string& id_field, const std::string& filter,
                                            const std::string& placeholder) {
    const std::string resource =
        collection + "?$select=" + id_field + "&$filter=" + UrlEncode(filter);
    if (dry_) {
      out_ << "GET " << resource << "\n";
      return std::optional<std::string>("{" + placeholder + "}");
    }
    Result<ClientResponse> r = web_->Send("GET", resource);
    if (!r.ok()) return r.status();
    if (r->status != 200) return Failed("GET " + collection, *r);
    simdjson::dom::parser parser;
    simdjson::dom::array rows;
    if (parser.parse(r->body).at_key("value").get(rows) != simdjson::SUCCESS) {
      return InvalidArgument("GET " + collection +
                             ": answer without a value array: " + Utf8Excerpt(r->body, 200));
    }
    if (rows.size() == 0) return std::optional<std::string>();
    if (rows.size() > 1) {
      return InvalidArgument("GET " + collection + ": " + std::to_string(rows.size()) +
                             " rows match " + filter + ": remove the duplicates by hand");
    }
    std::string_view id;
    if (rows.at(0).at_key(id_field).get(id) != simdjson::SUCCESS) {
      return InvalidArgument("GET " + collection + ": row without " + id_field);
    }
    return std::optional<std::string>(std::string(id));
  }

  // PATCHes the row when `existing` holds its id, else POSTs one. Returns the row's id.
  Result<std::string> Upsert(const std::string& collection, const std::string& id_field,
                             const std::optional<std::string>& existing, const std::string& body,
                             const std::string& shown_body, const std::string& what,
                             const std::string& placeholder) {
    if (dry_) {
      out_ << "PATCH " << collection << "(" << (existing ? *existing : "") << ") if it exists, "
           << "else POST " << collection << "\n  " << shown_body << "\n";
      return "{" + placeholder + "}";
    }
    if (existing) {
      Result<ClientResponse> r =
          web_->Send("PATCH", collection + "(" + *existing + ")", body, {{"If-Match", "*"}});
      if (!r.ok()) return r.status();
      if (r->status / 100 != 2) return Failed("PATCH " + collection, *r);
      out_ << what << ": updated " << *existing << "\n";
      ++updated;
      return *existing;
    }
    Result<ClientResponse> r =
        web_->Send("POST", collection, body, {{"Prefer", "return=representation"}});
    if (!r.ok()) return r.status();
    if (r->status / 100 != 2) return Failed("POST " + collection, *r);
    std::string id;
    simdjson::dom::parser parser;
    std::string_view v;
    if (!r->body.empty() && parser.parse(r->body).at_key(id_field).get(v) == simdjson::SUCCESS) {
      id = std::string(v);
    } else {  // 204: OData-EntityId: <url>(<id>)
      const std::string h = r->Header("odata-entityid");
      const size_t open = h.rfind('('), close = h.rfind(')');
      if (open != std::string::npos && close != std::string::npos && close > open) {
        id = h.substr(open + 1, close - open - 1);
      }
    }
    if (id.empty()) return InvalidArgument("POST " + collection + ": the answer names no id");
    out_ << what << ": created " << id << "\n";
    ++created;
    return id;
  }

  int created = 0, updated = 0;

 private:
  static Status Failed(const std::string& what, const ClientResponse& r) {
    simdjson::dom::parser parser;
    std::string_view message;
    std::string text = Utf8Excerpt(r.body, 300);
    if (parser.parse(r.body).at_pointer("/error/message").get(message) == simdjson::SUCCESS) {
      text = std::string(message);
    }
    return Status(r.status >= 500 || r.status == 429 ? StatusCode::kUnavailable
                                                     : StatusCode::kInvalidArgument,
                  what + ": HTTP " + std::to_string(r.status) + ": " + text);
  }

  WebApiClient* web_;
  bool dry_;
  std::ostream& out_;
};

}  // namespace

Status RegisterWebhook(const Config& config, WebApiClient* web, bool dry_run, std::ostream& out) {
  const RegistrationConfig& rc = config.registration;
  if (!rc.present) {
    return InvalidArgument("registration: missing: the config has no `registration` section");
  }
  if (web == nullptr && !dry_run) return InvalidArgument("registration: no Web API client");
  const AuthConfig& auth = config.ingress.auth;
  int authtype = 0;
  std::string authvalue;
  switch (auth.mode) {
    case AuthMode::kWebhookKey:
      authtype = 4;
      authvalue = auth.secret;
      break;
    case AuthMode::kHttpHeader:
      authtype = 5;
      authvalue = "<settings><setting name=\"" + XmlEscape(auth.header) + "\" value=\"" +
                  XmlEscape(auth.secret) + "\"/></settings>";
      break;
    case AuthMode::kHttpQueryString:
      authtype = 6;
      authvalue = "<settings><setting name=\"" + XmlEscape(auth.parameter) + "\" value=\"" +
                  XmlEscape(auth.secret) + "\"/></settings>";
      break;
    default:
      return InvalidArgument("registration: ingress.auth.mode none cannot be registered");
  }
  Registrar reg(web, dry_run, out);
  const std::string endpoint_head =
      "{\"name\":" + Quote(rc.endpoint_name) + ",\"url\":" + Quote(rc.webhook_url) +
      ",\"contract\":8,\"authtype\":" + std::to_string(authtype) + ",\"authvalue\":";
  auto endpoint_id = reg.Lookup("serviceendpoints", "serviceendpointid",
                                "name eq " + ODataString(rc.endpoint_name), "serviceendpointid");
  if (!endpoint_id.ok()) return endpoint_id.status();
  auto endpoint = reg.Upsert("serviceendpoints", "serviceendpointid", *endpoint_id,
                             endpoint_head + Quote(authvalue) + "}", endpoint_head + "\"***\"}",
                             "serviceendpoint " + rc.endpoint_name, "serviceendpointid");
  if (!endpoint.ok()) return endpoint.status();

  for (const RegistrationStep& st : rc.steps) {
    for (const std::string& message : st.messages) {
      // The endpoint's name in the step's: two routers (staging, production) registered in one
      // organization keep their own steps.
      const std::string step_name =
          rc.endpoint_name + ": " + st.table + " " + message + " " + std::to_string(st.stage);
      auto message_id = reg.Lookup("sdkmessages", "sdkmessageid", "name eq " + ODataString(message),
                                   "sdkmessageid:" + message);
      if (!message_id.ok()) return message_id.status();
      if (!*message_id) return InvalidArgument("registration: no message named " + message);
      auto filter_id = reg.Lookup("sdkmessagefilters", "sdkmessagefilterid",
                                  "sdkmessageid/sdkmessageid eq " + **message_id +
                                      " and primaryobjecttypecode eq " + ODataString(st.table),
                                  "sdkmessagefilterid:" + st.table + "/" + message);
      if (!filter_id.ok()) return filter_id.status();
      if (!*filter_id) {
        return InvalidArgument("registration: message " + message + " is not available on table " +
                               st.table);
      }
      std::string body =
          "{\"name\":" + Quote(step_name) +
          ",\"description\":\"Sends the event to dvrouter\",\"stage\":" + std::to_string(st.stage) +
          ",\"mode\":" + (st.async ? "1" : "0") + ",\"rank\":" + std::to_string(st.rank) +
          ",\"supporteddeployment\":0,\"asyncautodelete\":" + (st.async ? "true" : "false");
      if (message == "Update") {
        // Empty means every column: dvrouter's own write-back would then raise events too.
        body += ",\"filteringattributes\":" + Quote(Join(st.filtering_attributes));
      }
      body += ",\"eventhandler_serviceendpoint@odata.bind\":\"/serviceendpoints(" + *endpoint +
              ")\",\"sdkmessageid@odata.bind\":\"/sdkmessages(" + **message_id +
              ")\",\"sdkmessagefilterid@odata.bind\":\"/sdkmessagefilters(" + **filter_id + ")\"}";
      auto step_id = reg.Lookup("sdkmessageprocessingsteps", "sdkmessageprocessingstepid",
                                "name eq " + ODataString(step_name),
                                "sdkmessageprocessingstepid:" + step_name);
      if (!step_id.ok()) return step_id.status();
      auto step =
          reg.Upsert("sdkmessageprocessingsteps", "sdkmessageprocessingstepid", *step_id, body,
                     body, "step " + step_name, "sdkmessageprocessingstepid:" + step_name);
      if (!step.ok()) return step.status();
      for (const RegistrationImage& im : st.images) {
        const int type = im.type == "pre" ? 0 : im.type == "post" ? 1 : 2;
        const std::string image_body =
            "{\"name\":" + Quote(im.name) + ",\"entityalias\":" + Quote(im.name) +
            ",\"imagetype\":" + std::to_string(type) + ",\"messagepropertyname\":" +
            (message == "Create"                                           ? "\"Id\""
             : message == "SetState" || message == "SetStateDynamicEntity" ? "\"EntityMoniker\""
                                                                           : "\"Target\"") +
            ",\"attributes\":" + Quote(Join(im.attributes)) +
            ",\"sdkmessageprocessingstepid@odata.bind\":\"/sdkmessageprocessingsteps(" + *step +
            ")\"}";
        auto image_id =
            reg.Lookup("sdkmessageprocessingstepimages", "sdkmessageprocessingstepimageid",
                       "sdkmessageprocessingstepid/sdkmessageprocessingstepid eq " + *step +
                           " and name eq " + ODataString(im.name),
                       "sdkmessageprocessingstepimageid:" + im.name);
        if (!image_id.ok()) return image_id.status();
        auto image = reg.Upsert("sdkmessageprocessingstepimages", "sdkmessageprocessingstepimageid",
                                *image_id, image_body, image_body,
                                "image " + im.name + " of step " + step_name,
                                "sdkmessageprocessingstepimageid:" + im.name);
        if (!image.ok()) return image.status();
      }
    }
  }
  if (dry_run) {
    out << "dry run: nothing was sent\n";
  } else {
    out << "registered: " << reg.created << " created, " << reg.updated << " updated\n";
  }
  return Status::Ok();
}

}  // namespace dvrouter
