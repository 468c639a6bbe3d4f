#include "adapters/dataverse/change_tracking.h"

#include <simdjson.h>

#include <algorithm>
#include <charconv>
#include <utility>

#define XXH_STATIC_LINKING_ONLY  // XXH3 state on the stack
#include <xxhash.h>

#include "router/common/json.h"
#include "router/decode/decode.h"

namespace dvrouter {

namespace {

// A GUID (lowercase, 36 characters) made of a 128-bit hash of `parts`.
std::string GuidOf(std::initializer_list<std::string_view> parts) {
  XXH3_state_t state;
  XXH3_INITSTATE(&state);
  XXH3_128bits_reset(&state);
  for (std::string_view part : parts) {
    XXH3_128bits_update(&state, part.data(), part.size());
    XXH3_128bits_update(&state, "\x1f", 1);
  }
  const XXH128_hash_t h = XXH3_128bits_digest(&state);
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out;
  out.reserve(36);
  for (int i = 0; i < 32; ++i) {
    const uint64_t word = i < 16 ? h.high64 : h.low64;
    out += kDigits[(word >> (60 - 4 * (i % 16))) & 0xf];
    if (i == 7 || i == 11 || i == 15 || i == 19) out += '-';
  }
  return out;
}

int64_t DateOf(simdjson::dom::element e) {
  std::string_view text;
  if (e.get(text) != simdjson::SUCCESS) return 0;
  Result<int64_t> ms = ParseDataverseDate(text);
  return ms.ok() ? *ms : 0;
}

// RowVersion and modifiedon of an Entity in a webhook body.
void EntityVersion(simdjson::dom::object entity, SeenVersion* out) {
  std::string_view text;
  if (entity.at_key("RowVersion").get(text) == simdjson::SUCCESS) {
    int64_t v = 0;
    const auto r = std::from_chars(text.data(), text.data() + text.size(), v);
    if (r.ec == std::errc() && r.ptr == text.data() + text.size()) out->version = v;
  }
  simdjson::dom::array attributes;
  if (entity.at_key("Attributes").get(attributes) != simdjson::SUCCESS) return;
  for (simdjson::dom::element a : attributes) {
    std::string_view key;
    simdjson::dom::element value;
    if (a.at_key("key").get(key) == simdjson::SUCCESS && key == "modifiedon" &&
        a.at_key("value").get(value) == simdjson::SUCCESS) {
      out->modified_ms = DateOf(value);
    }
  }
}

// A string member ("" when absent, null or not a string).
std::string_view StringOf(simdjson::dom::object row, std::string_view key) {
  std::string_view v;
  if (row.at_key(key).get(v) != simdjson::SUCCESS) return {};
  return v;
}

int64_t NumberOf(simdjson::dom::object row, std::string_view key) {
  simdjson::dom::element e;
  if (row.at_key(key).get(e) != simdjson::SUCCESS) return 0;
  int64_t v = 0;
  if (e.get(v) == simdjson::SUCCESS) return v;
  std::string_view text;  // versionnumber is a string in some answers
  if (e.get(text) == simdjson::SUCCESS) {
    const auto r = std::from_chars(text.data(), text.data() + text.size(), v);
    if (r.ec == std::errc() && r.ptr == text.data() + text.size()) return v;
  }
  return 0;
}

}  // namespace

Result<DeltaPage> ParseDeltaPage(std::string_view body, std::string_view table) {
  simdjson::dom::parser parser;
  simdjson::dom::object root;
  if (parser.parse(body.data(), body.size()).get(root) != simdjson::SUCCESS) {
    return InvalidArgument("change tracking: the answer is not JSON: " + Utf8Excerpt(body, 120));
  }
  simdjson::dom::array items;
  if (root.at_key("value").get(items) != simdjson::SUCCESS) {
    return InvalidArgument("change tracking: the answer has no value array: " +
                           Utf8Excerpt(body, 120));
  }
  DeltaPage page;
  const std::string id_column = std::string(table) + "id";
  size_t index = 0;
  for (simdjson::dom::element e : items) {
    simdjson::dom::object row;
    TrackedRow out;
    std::string why;
    if (e.get(row) != simdjson::SUCCESS) {
      why = "not an object";
    } else {
      const bool deleted = StringOf(row, "@odata.context").ends_with("/$deletedEntity");
      const std::string_view id = StringOf(row, deleted ? "id" : id_column);
      if (!CanonicalGuid(id, &out.id)) {
        why = (deleted ? std::string("a deleted entry's id") : id_column) +
              " is missing or not a GUID: " + Utf8Excerpt(id, 60);
      } else if (deleted) {
        out.deleted = true;
      } else {
        if (simdjson::dom::element c; row.at_key("createdon").get(c) == simdjson::SUCCESS) {
          out.created_ms = DateOf(c);
        }
        if (simdjson::dom::element m; row.at_key("modifiedon").get(m) == simdjson::SUCCESS) {
          out.modified_ms = DateOf(m);
        } else {
          out.modified_ms = 0;
        }
        out.version = NumberOf(row, "versionnumber");
        CanonicalGuid(StringOf(row, "_modifiedby_value"), &out.modified_by);
        out.json = simdjson::minify(row);
      }
    }
    if (why.empty()) {
      page.rows.push_back(std::move(out));
    } else {
      page.bad.push_back(BadJobRow{index, std::move(why)});
    }
    ++index;
  }
  std::string_view link;
  if (root.at_key("@odata.nextLink").get(link) == simdjson::SUCCESS) page.next_link = link;
  if (root.at_key("@odata.deltaLink").get(link) == simdjson::SUCCESS) page.delta_link = link;
  if (page.next_link.empty() && page.delta_link.empty()) {
    return InvalidArgument(
        "change tracking: a page with neither @odata.nextLink nor @odata.deltaLink");
  }
  return page;
}

SeenVersion SeenInWebhook(std::string_view body, std::string_view message) {
  SeenVersion out;
  if (message == "Delete") {
    out.deleted = true;
    return out;
  }
  thread_local simdjson::dom::parser parser;  // one per event scanned: keep its buffers
  simdjson::dom::object root;
  if (parser.parse(body.data(), body.size()).get(root) != simdjson::SUCCESS) return out;
  simdjson::dom::array inputs;
  if (root.at_key("InputParameters").get(inputs) == simdjson::SUCCESS) {
    for (simdjson::dom::element p : inputs) {
      std::string_view key;
      simdjson::dom::object target;
      if (p.at_key("key").get(key) == simdjson::SUCCESS && key == "Target" &&
          p.at_key("value").get(target) == simdjson::SUCCESS) {
        EntityVersion(target, &out);
      }
    }
  }
  simdjson::dom::array images;
  if ((out.modified_ms == 0 || out.version == 0) &&
      root.at_key("PostEntityImages").get(images) == simdjson::SUCCESS) {
    for (simdjson::dom::element image : images) {
      simdjson::dom::object entity;
      if (image.at_key("value").get(entity) != simdjson::SUCCESS) continue;
      SeenVersion from_image;
      EntityVersion(entity, &from_image);
      if (out.modified_ms == 0) out.modified_ms = from_image.modified_ms;
      if (out.version == 0) out.version = from_image.version;
      break;
    }
  }
  return out;
}

void MergeSeen(const SeenVersion& seen, SeenVersion* into) {
  into->modified_ms = std::max(into->modified_ms, seen.modified_ms);
  into->version = std::max(into->version, seen.version);
  into->deleted = into->deleted || seen.deleted;
}

bool IsSeen(const SeenVersion& seen, const TrackedRow& row) {
  if (row.deleted) return seen.deleted;
  if (seen.version > 0 && row.version > 0) return seen.version >= row.version;
  if (seen.modified_ms > 0 && row.modified_ms > 0) return seen.modified_ms >= row.modified_ms;
  return false;
}

FailedJob TrackedChangeJob(std::string_view table, const TrackedRow& row, std::string_view message,
                           std::string_view token) {
  FailedJob job;
  job.step_id = GuidOf({"dvrouter change tracking", table});
  const std::string version =
      row.deleted ? std::string(token)
                  : std::to_string(row.version) + "/" + std::to_string(row.modified_ms);
  job.id = GuidOf({"dvrouter change", table, row.id, message, version});
  job.message = std::string(message);
  job.table = std::string(table);
  job.row_id = row.id;
  job.completed_ms = row.modified_ms;
  job.created_ms = row.modified_ms;
  return job;
}

std::string TrackedChangeStepName(std::string_view table) {
  return "dvrouter change tracking: " + std::string(table);
}

}  // namespace dvrouter
