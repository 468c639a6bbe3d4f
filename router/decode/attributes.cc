#include "router/decode/attributes.h"

#include <simdjson.h>

#include <utility>

#include "router/common/json.h"
#include "router/decode/decode.h"

namespace dvrouter {

namespace {

namespace od = simdjson::ondemand;

constexpr int kMaxNesting = 64;

Status JsonError(std::string_view where, simdjson::error_code e) {
  return InvalidArgument(std::string(where) + ": " + simdjson::error_message(e));
}

// The type name before the ':' in "__type" ("OptionSetValue:http://...").
std::string_view TypeName(std::string_view t) { return t.substr(0, t.find(':')); }

// Calls fn(name, value) for each member in order; stops at the first error.
template <typename Fn>
Status ForEachMember(od::object o, std::string_view where, Fn&& fn) {
  for (auto member_result : o) {
    od::field member;
    if (auto e = std::move(member_result).get(member)) return JsonError(where, e);
    std::string_view name;
    if (auto e = member.unescaped_key().get(name)) return JsonError(where, e);
    if (Status st = fn(name, member.value()); !st.ok()) return st;
  }
  return Status::Ok();
}

// Compares a member's name without unescaping it. simdjson unescapes keys into one buffer sized
// for a single pass over the document, so passes that only look for a name (before a reset()
// and a second pass) must not unescape: long keys read twice would overrun it.
bool NameIs(od::field& f, std::string_view name) { return f.key() == name; }

void CivilFromDays(int64_t z, int64_t* y, unsigned* m, unsigned* d) {
  // Howard Hinnant's algorithm, the inverse of days_from_civil.
  z += 719468;
  const int64_t era = (z >= 0 ? z : z - 146096) / 146097;
  const unsigned doe = static_cast<unsigned>(z - era * 146097);
  const unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
  const unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
  const unsigned mp = (5 * doy + 2) / 153;
  *d = doy - (153 * mp + 2) / 5 + 1;
  *m = mp < 10 ? mp + 3 : mp - 9;
  *y = static_cast<int64_t>(yoe) + era * 400 + (*m <= 2);
}

class Converter {
 public:
  explicit Converter(std::string* out) : out_(out) {}

  Status Value(od::value v, int depth) {
    if (depth > kMaxNesting) return InvalidArgument("Target: JSON nested deeper than 64 levels");
    od::json_type type;
    if (auto e = v.type().get(type)) return JsonError("Target", e);
    switch (type) {
      case od::json_type::object: {
        od::object o;
        if (auto e = v.get_object().get(o)) return JsonError("Target", e);
        return Object(o, depth);
      }
      case od::json_type::array: {
        od::array a;
        if (auto e = v.get_array().get(a)) return JsonError("Target", e);
        return Array(a, depth);
      }
      case od::json_type::string: {
        std::string_view s;
        if (auto e = v.get_string().get(s)) return JsonError("Target", e);
        if (s.starts_with("/Date(")) {
          Result<int64_t> ms = ParseDataverseDate(s);
          if (ms.ok()) {
            AppendJsonString(out_, FormatIsoUtc(*ms));
            return Status::Ok();
          }
        }
        AppendJsonString(out_, s);
        return Status::Ok();
      }
      case od::json_type::number: {
        // Validate, then copy the exact text (decimals must not go through a double).
        od::number n;
        double d;
        if (v.get_number().get(n) != simdjson::SUCCESS) {
          if (auto e = v.get_double().get(d)) return JsonError("Target", e);  // > 64-bit ints
        }
        std::string_view raw = v.raw_json_token();
        while (!raw.empty() && (raw.back() == ' ' || raw.back() == '\n' || raw.back() == '\r' ||
                                raw.back() == '\t')) {
          raw.remove_suffix(1);
        }
        out_->append(raw);
        return Status::Ok();
      }
      case od::json_type::boolean: {
        bool b;
        if (auto e = v.get_bool().get(b)) return JsonError("Target", e);
        out_->append(b ? "true" : "false");
        return Status::Ok();
      }
      case od::json_type::null: {
        bool is_null = false;
        if (auto e = v.is_null().get(is_null)) return JsonError("Target", e);
        if (!is_null) return InvalidArgument("Target: invalid literal");
        out_->append("null");
        return Status::Ok();
      }
    }
    return InvalidArgument("Target: unknown JSON value type");
  }

  // Converts an entity's [{"key","value"}] list into an object; collects the keys if asked.
  Status KeyValueList(od::array a, int depth, std::vector<std::string>* keys) {
    out_->push_back('{');
    bool first = true;
    for (auto element_result : a) {
      od::object pair;
      if (auto e = std::move(element_result).get_object().get(pair)) {
        return JsonError("Target.Attributes", e);
      }
      // Points into the parser's string buffer, valid for the whole document: no copy per key.
      std::string_view key;
      bool have_key = false, have_value = false;
      Status st = ForEachMember(pair, "Target.Attributes", [&](std::string_view name, od::value v) {
        if (name == "key") {
          if (auto e = v.get_string().get(key)) return JsonError("Target.Attributes", e);
          have_key = true;
        } else if (name == "value") {
          // The serializer writes "key" first; refuse the other order rather than buffer.
          if (!have_key) return InvalidArgument("Target.Attributes: \"value\" before \"key\"");
          if (!first) out_->push_back(',');
          first = false;
          AppendJsonString(out_, key);
          out_->push_back(':');
          if (Status vst = Value(v, depth + 1); !vst.ok()) return vst;
          if (keys) keys->emplace_back(key);
          have_value = true;
        }
        return Status::Ok();
      });
      if (!st.ok()) return st;
      if (!have_key || !have_value) {
        return InvalidArgument("Target.Attributes: an element lacks \"key\" or \"value\"");
      }
    }
    out_->push_back('}');
    return Status::Ok();
  }

  // Entity fields, read in any order; Attributes are converted into a side buffer. With
  // `attributes_out` (the Target itself), the attributes object is written there and nothing to
  // out_: the caller keeps only the attributes, id and logical name.
  Status EntityBody(od::object o, int depth, std::string* id, std::string* logical_name,
                    std::vector<std::string>* keys, bool* is_reference, bool typed,
                    std::string_view type, std::string* attributes_out = nullptr) {
    std::string side;
    std::string& attributes = attributes_out != nullptr ? *attributes_out : side;
    attributes = "{}";
    std::string name_json = "null";
    bool have_attributes = false;
    Status st = ForEachMember(o, "Target", [&](std::string_view name, od::value v) {
      if (name == "Id") {
        std::string_view s;
        if (auto e = v.get_string().get(s)) return JsonError("Target.Id", e);
        if (!CanonicalGuid(s, id)) id->assign(s);
      } else if (name == "LogicalName") {
        std::string_view s;
        if (auto e = v.get_string().get(s)) return JsonError("Target.LogicalName", e);
        logical_name->assign(s);
      } else if (name == "Name") {
        name_json.clear();
        Converter c(&name_json);
        return c.Value(v, depth + 1);
      } else if (name == "Attributes") {
        od::array a;
        if (auto e = v.get_array().get(a)) return JsonError("Target.Attributes", e);
        attributes.clear();
        Converter c(&attributes);
        have_attributes = true;
        return c.KeyValueList(a, depth + 1, keys);
      }
      // Other members (FormattedValues, KeyAttributes, RowVersion, ...) are not needed.
      return Status::Ok();
    });
    if (!st.ok()) return st;
    const bool reference = typed ? type == "EntityReference" : !have_attributes;
    if (is_reference) *is_reference = reference;
    if (attributes_out != nullptr) {
      if (reference) attributes = "{}";  // a reference has no attributes to keep
      return Status::Ok();
    }
    out_->append("{\"id\":");
    AppendJsonString(out_, *id);
    out_->append(",\"logicalname\":");
    AppendJsonString(out_, *logical_name);
    if (reference) {
      out_->append(",\"name\":");
      out_->append(name_json);
    } else {
      out_->append(",\"attributes\":");
      out_->append(attributes);
    }
    out_->push_back('}');
    return Status::Ok();
  }

 private:
  Status Object(od::object o, int depth) {
    // DataContractJsonSerializer writes "__type" first: peek at the first member.
    auto it_result = o.begin();
    od::object_iterator it;
    if (auto e = std::move(it_result).get(it)) return JsonError("Target", e);
    if (it == o.end()) {
      out_->append("{}");
      return Status::Ok();
    }
    od::field first;
    if (auto e = (*it).get(first)) return JsonError("Target", e);
    if (!NameIs(first, "__type")) return GenericObject(o, depth);
    std::string_view type_full;
    if (auto e = first.value().get_string().get(type_full)) return JsonError("Target.__type", e);
    const std::string type(TypeName(type_full));
    ++it;
    if (type == "OptionSetValue" || type == "Money" || type == "BooleanManagedProperty") {
      for (; it != o.end(); ++it) {
        od::field f;
        if (auto e = (*it).get(f)) return JsonError("Target", e);
        if (NameIs(f, "Value")) return Value(f.value(), depth + 1);
      }
      out_->append("null");
      return Status::Ok();
    }
    if (type == "Entity" || type == "EntityReference") {
      // Re-iterating from the start would re-read "__type": reset is cheap.
      if (auto e = o.reset().error()) return JsonError("Target", e);
      std::string id, logical_name;
      return EntityBody(o, depth, &id, &logical_name, nullptr, nullptr, true, type);
    }
    if (type == "EntityCollection") {
      for (; it != o.end(); ++it) {
        od::field f;
        if (auto e = (*it).get(f)) return JsonError("Target", e);
        if (NameIs(f, "Entities")) return Value(f.value(), depth + 1);
      }
      out_->append("[]");
      return Status::Ok();
    }
    // Another typed value: keep its members, minus the type marker.
    if (auto e = o.reset().error()) return JsonError("Target", e);
    return GenericObject(o, depth);
  }

  Status GenericObject(od::object o, int depth) {
    if (auto e = o.reset().error()) return JsonError("Target", e);
    // An untyped entity (inside an EntityCollection) still has LogicalName and Attributes.
    bool looks_like_entity = false;
    for (auto member_result : o) {
      od::field member;
      if (auto e = std::move(member_result).get(member)) return JsonError("Target", e);
      if (NameIs(member, "Attributes")) looks_like_entity = true;
    }
    if (auto e = o.reset().error()) return JsonError("Target", e);
    if (looks_like_entity) {
      std::string id, logical_name;
      return EntityBody(o, depth, &id, &logical_name, nullptr, nullptr, false, "");
    }
    out_->push_back('{');
    bool first = true;
    Status st = ForEachMember(o, "Target", [&](std::string_view name, od::value v) {
      if (name == "__type") return Status::Ok();
      if (!first) out_->push_back(',');
      first = false;
      AppendJsonString(out_, name);
      out_->push_back(':');
      return Value(v, depth + 1);
    });
    if (!st.ok()) return st;
    out_->push_back('}');
    return Status::Ok();
  }

  Status Array(od::array a, int depth) {
    out_->push_back('[');
    bool first = true;
    for (auto element_result : a) {
      od::value element;
      if (auto e = std::move(element_result).get(element)) return JsonError("Target", e);
      if (!first) out_->push_back(',');
      first = false;
      if (Status st = Value(element, depth + 1); !st.ok()) return st;
    }
    out_->push_back(']');
    return Status::Ok();
  }

  std::string* out_;
};

}  // namespace

void ChangeSet::Clear() {
  has_target = false;
  is_reference = false;
  entity.clear();
  id.clear();
  attributes = "{}";
  columns.clear();
}

std::string FormatIsoUtc(int64_t ms) {
  std::string out;
  AppendIsoUtc(&out, ms);
  return out;
}

void AppendIsoUtc(std::string* out, int64_t ms) {
  int64_t days = ms / 86'400'000;
  int64_t rem = ms % 86'400'000;
  if (rem < 0) {
    rem += 86'400'000;
    --days;
  }
  int64_t y;
  unsigned m, d;
  CivilFromDays(days, &y, &m, &d);
  if (y < 0 || y > 9999) {  // outside what four digits hold: the general (slow) path
    char buf[48];
    std::snprintf(buf, sizeof(buf), "%04lld-%02u-%02uT%02lld:%02lld:%02lld.%03lldZ",
                  static_cast<long long>(y), m, d, static_cast<long long>(rem / 3'600'000),
                  static_cast<long long>(rem / 60'000 % 60),
                  static_cast<long long>(rem / 1000 % 60), static_cast<long long>(rem % 1000));
    out->append(buf);
    return;
  }
  // YYYY-MM-DDTHH:MM:SS.mmmZ written digit by digit: this runs for every date of every event
  // on the delivery path, where snprintf was a visible share of the profile.
  char text[] = "0000-00-00T00:00:00.000Z";
  auto put = [&text](size_t at, int64_t v, int digits) {
    for (int i = digits - 1; i >= 0; --i, v /= 10)
      text[at + static_cast<size_t>(i)] = static_cast<char>('0' + v % 10);
  };
  put(0, y, 4);
  put(5, m, 2);
  put(8, d, 2);
  put(11, rem / 3'600'000, 2);
  put(14, rem / 60'000 % 60, 2);
  put(17, rem / 1000 % 60, 2);
  put(20, rem % 1000, 3);
  out->append(text, sizeof(text) - 1);
}

struct AttributeExtractor::Impl {
  explicit Impl(size_t max_bytes) : parser(max_bytes) {}
  od::parser parser;
  std::string padded;

  // The bytes in place when simdjson's padding is readable past them, else a padded copy.
  simdjson::padded_string_view Padded(const char* data, size_t len, size_t capacity) {
    if (capacity >= len + simdjson::SIMDJSON_PADDING) {
      return simdjson::padded_string_view(data, len, capacity);
    }
    padded.reserve(len + simdjson::SIMDJSON_PADDING);
    padded.assign(data, len);
    return simdjson::padded_string_view(padded.data(), len, padded.capacity());
  }
  // Parses the bytes as one JSON document up to its root object; errors name `field`.
  Status Root(const char* data, size_t len, size_t capacity, std::string_view field,
              od::document* doc, od::object* root) {
    if (auto e = parser.iterate(Padded(data, len, capacity)).get(*doc)) return JsonError(field, e);
    if (auto e = doc->get_object().get(*root)) return JsonError(field, e);
    return Status::Ok();
  }
};

AttributeExtractor::AttributeExtractor(size_t max_body_bytes)
    : impl_(std::make_unique<Impl>(max_body_bytes)) {}
AttributeExtractor::~AttributeExtractor() = default;

namespace {

// Target's value (an Entity, or an EntityReference for Delete) into *out.
Status ConvertTarget(od::object target, ChangeSet* out) {
  std::string type;
  for (auto tf : target) {
    od::field f;
    if (auto e = std::move(tf).get(f)) return JsonError("Target", e);
    if (NameIs(f, "__type")) {
      std::string_view t;
      if (auto e = f.value().get_string().get(t)) return JsonError("Target.__type", e);
      type.assign(TypeName(t));
    }
    break;  // "__type" comes first when present
  }
  if (auto e = target.reset().error()) return JsonError("Target", e);
  // The attributes are converted straight into out->attributes (its storage is kept from one
  // event to the next); the entity's own JSON is not needed.
  Converter c(nullptr);
  bool reference = false;
  if (Status st = c.EntityBody(target, 1, &out->id, &out->entity, &out->columns, &reference,
                               !type.empty(), type, &out->attributes);
      !st.ok()) {
    out->attributes = "{}";
    return st;
  }
  out->has_target = true;
  out->is_reference = reference;
  return Status::Ok();
}

}  // namespace

Status AttributeExtractor::Extract(const char* data, size_t len, size_t capacity, ChangeSet* out) {
  out->Clear();
  od::document doc;
  od::object root;
  if (Status st = impl_->Root(data, len, capacity, "body", &doc, &root); !st.ok()) return st;
  for (auto field_result : root) {
    od::field field;
    if (auto e = std::move(field_result).get(field)) return JsonError("body", e);
    std::string_view key;
    if (auto e = field.unescaped_key().get(key)) return JsonError("body", e);
    if (key != "InputParameters") continue;
    od::array params;
    if (auto e = field.value().get_array().get(params)) return JsonError("InputParameters", e);
    for (auto param_result : params) {
      od::object param;
      if (auto e = std::move(param_result).get_object().get(param)) {
        return JsonError("InputParameters", e);
      }
      bool is_target = false;
      for (auto member_result : param) {
        od::field member;
        if (auto e = std::move(member_result).get(member)) return JsonError("InputParameters", e);
        std::string_view name;
        if (auto e = member.unescaped_key().get(name)) return JsonError("InputParameters", e);
        if (name == "key") {
          std::string_view k;
          if (auto e = member.value().get_string().get(k)) return JsonError("InputParameters", e);
          is_target = k == "Target";
        } else if (name == "value" && is_target) {
          od::object target;
          if (auto e = member.value().get_object().get(target)) return JsonError("Target", e);
          return ConvertTarget(target, out);
        }
      }
    }
  }
  return Status::Ok();
}

Status AttributeExtractor::ExtractTarget(const char* data, size_t len, size_t capacity,
                                         ChangeSet* out) {
  out->Clear();
  od::document doc;
  od::object target;
  if (Status st = impl_->Root(data, len, capacity, "Target", &doc, &target); !st.ok()) return st;
  return ConvertTarget(target, out);
}

AttributeExtractor& ThreadAttributeExtractor() {
  thread_local std::unique_ptr<AttributeExtractor> extractor;
  if (!extractor) extractor = std::make_unique<AttributeExtractor>(64u << 20);
  return *extractor;
}

namespace {
std::atomic<uint64_t> memo_extractions{0};
std::atomic<uint64_t> memo_in_place{0};
std::atomic<uint64_t> memo_target{0};
}  // namespace

Status ChangeMemo::Get(std::string_view body, const ChangeSet** out) {
  if (!done_.load(std::memory_order_acquire)) {
    std::lock_guard<std::mutex> lock(mu_);
    if (!done_.load(std::memory_order_relaxed)) {
      // Without padding after the body, the extractor copies it into its own buffer.
      const size_t capacity =
          body.data() == readable_data_ && readable_ >= body.size() ? readable_ : body.size();
      const size_t end = size_t{target_offset_} + target_length_;
      if (target_length_ >= 2 && end <= body.size() && body[target_offset_] == '{' &&
          body[end - 1] == '}') {
        status_ = ThreadAttributeExtractor().ExtractTarget(
            body.data() + target_offset_, target_length_, capacity - target_offset_, &changes_);
        memo_target.fetch_add(1, std::memory_order_relaxed);
      } else {
        status_ = ThreadAttributeExtractor().Extract(body.data(), body.size(), capacity, &changes_);
      }
      if (capacity >= body.size() + simdjson::SIMDJSON_PADDING) {
        memo_in_place.fetch_add(1, std::memory_order_relaxed);
      }
      memo_extractions.fetch_add(1, std::memory_order_relaxed);
      done_.store(true, std::memory_order_release);
    }
  }
  *out = &changes_;
  return status_;
}

void ChangeMemo::Prefetch() const {
  if (!done_.load(std::memory_order_acquire)) return;
  const std::string& attributes = changes_.attributes;
  for (size_t at = 0; at < attributes.size(); at += 64) __builtin_prefetch(attributes.data() + at);
}

void ChangeMemo::Reset() {
  done_.store(false, std::memory_order_relaxed);
  readable_data_ = nullptr;
  readable_ = 0;
  target_offset_ = target_length_ = 0;
  status_ = Status::Ok();
  changes_.Clear();
}

uint64_t ChangeMemo::StorageBytes() const {
  uint64_t n = changes_.attributes.capacity() + changes_.entity.capacity() +
               changes_.id.capacity() + changes_.columns.capacity() * sizeof(std::string);
  for (const std::string& c : changes_.columns) n += c.capacity();
  return n;
}

uint64_t ChangeMemo::Extractions() { return memo_extractions.load(std::memory_order_relaxed); }
uint64_t ChangeMemo::InPlaceExtractions() { return memo_in_place.load(std::memory_order_relaxed); }
uint64_t ChangeMemo::TargetExtractions() { return memo_target.load(std::memory_order_relaxed); }

Status ExtractChanges(std::string_view body, ChangeMemo* memo, ChangeSet* scratch,
                      const ChangeSet** out) {
  if (memo != nullptr) return memo->Get(body, out);
  *out = scratch;
  return ThreadAttributeExtractor().Extract(body.data(), body.size(), body.size(), scratch);
}

}  // namespace dvrouter
