#include "router/decode/decode.h"

#include <simdjson.h>

#include <charconv>
#include <string>
#include <utility>

namespace dvrouter {

static_assert(Decoder::kPadding >= simdjson::SIMDJSON_PADDING,
              "Decoder::kPadding below simdjson's padding");

namespace {

namespace od = simdjson::ondemand;

Status FieldError(std::string_view field, std::string_view problem) {
  std::string m(field);
  m += ": ";
  m += problem;
  return InvalidArgument(m);
}

Status JsonError(std::string_view field, simdjson::error_code e) {
  return FieldError(field, simdjson::error_message(e));
}

// Names (messages, tables, organizations) are short in Dataverse; a longer one is not a real
// event, and the journal frame stores each header string with a 16-bit length.
constexpr size_t kMaxNameBytes = 1024;

Status ReadString(od::value v, std::string_view field, std::string* out) {
  std::string_view s;
  if (auto e = v.get_string().get(s)) return JsonError(field, e);
  if (s.size() > kMaxNameBytes) return FieldError(field, "longer than 1024 bytes");
  out->assign(s);
  return Status::Ok();
}

constexpr std::string_view kNotALogicalName =
    "not a Dataverse logical name (a lowercase letter, then up to 127 lowercase letters, digits "
    "or underscores)";

// A table's logical name (table names go into lake paths and Web API URLs).
Status ReadLogicalName(od::value v, std::string_view field, std::string* out) {
  if (Status st = ReadString(v, field, out); !st.ok()) return st;
  if (!IsLogicalName(*out)) return FieldError(field, kNotALogicalName);
  return Status::Ok();
}

// SecondaryEntityName is not kept, only checked: a logical name ("none" when there is none), or
// null.
Status CheckSecondaryEntityName(od::value v, std::string_view field) {
  bool is_null = false;
  if (auto e = v.is_null().get(is_null)) return JsonError(field, e);
  if (is_null) return Status::Ok();
  std::string_view s;
  if (auto e = v.get_string().get(s)) return JsonError(field, e);
  if (!IsLogicalName(s)) return FieldError(field, kNotALogicalName);
  return Status::Ok();
}

// Null is allowed and leaves *out empty (RequestId is null in asynchronous steps).
Status ReadGuid(od::value v, std::string_view field, std::string* out) {
  bool is_null = false;
  if (auto e = v.is_null().get(is_null)) return JsonError(field, e);
  if (is_null) {
    out->clear();
    return Status::Ok();
  }
  std::string_view s;
  if (auto e = v.get_string().get(s)) return JsonError(field, e);
  if (!CanonicalGuid(s, out)) return FieldError(field, "not a GUID");
  return Status::Ok();
}

Status ReadInt32(od::value v, std::string_view field, int32_t* out) {
  int64_t n = 0;
  if (auto e = v.get_int64().get(n)) return JsonError(field, e);
  if (n < INT32_MIN || n > INT32_MAX) return FieldError(field, "integer out of range");
  *out = static_cast<int32_t>(n);
  return Status::Ok();
}

// Dataverse contexts nest a few levels per ParentContext; anything this deep is an attack.
constexpr int kMaxNesting = 64;

// Walks a value the decoder does not need, so that the whole body is checked as JSON in the
// same single pass (On-Demand otherwise skips values without validating their grammar).
Status ValidateValue(od::value v, int depth, std::string_view field) {
  if (depth > kMaxNesting) return FieldError(field, "JSON nested deeper than 64 levels");
  od::json_type type;
  if (auto e = v.type().get(type)) return JsonError(field, e);
  switch (type) {
    case od::json_type::array: {
      od::array array;
      if (auto e = v.get_array().get(array)) return JsonError(field, e);
      for (auto element_result : array) {
        od::value element;
        if (auto e = std::move(element_result).get(element)) return JsonError(field, e);
        if (Status st = ValidateValue(element, depth + 1, field); !st.ok()) return st;
      }
      return Status::Ok();
    }
    case od::json_type::object: {
      od::object object;
      if (auto e = v.get_object().get(object)) return JsonError(field, e);
      for (auto member_result : object) {
        od::field member;
        if (auto e = std::move(member_result).get(member)) return JsonError(field, e);
        std::string_view key;
        if (auto e = member.unescaped_key().get(key)) return JsonError(field, e);
        if (Status st = ValidateValue(member.value(), depth + 1, field); !st.ok()) return st;
      }
      return Status::Ok();
    }
    case od::json_type::string: {
      std::string_view s;
      if (auto e = v.get_string().get(s)) return JsonError(field, e);
      return Status::Ok();
    }
    case od::json_type::number: {
      // Integers beyond 64 bits are valid JSON: get_number refuses them, get_double takes them.
      od::number n;
      double d;
      if (v.get_number().get(n) != simdjson::SUCCESS) {
        if (auto e = v.get_double().get(d)) return JsonError(field, e);
      }
      return Status::Ok();
    }
    case od::json_type::boolean: {
      bool b;
      if (auto e = v.get_bool().get(b)) return JsonError(field, e);
      return Status::Ok();
    }
    case od::json_type::null: {
      bool is_null = false;
      if (auto e = v.is_null().get(is_null)) return JsonError(field, e);
      if (!is_null) return FieldError(field, "invalid literal");
      return Status::Ok();
    }
  }
  return FieldError(field, "unknown JSON value type");
}

// InputParameters, checked as ValidateValue checks any value, noting in out->target_* where the
// value the attribute extractor converts lies (AttributeExtractor::Extract, attributes.cc): the
// first parameter whose latest "key" member is the string "Target" and whose "value" member
// comes after it, an object. Wherever the extractor's walk would end otherwise (a parameter
// that is not an object, a "key" that is not a string, a Target that is not an object), nothing
// is noted and delivery parses the whole body (docs/architecture.md, "The Target's place").
Status ReadInputParameters(od::value v, const char* base, od::document& doc, EventHeader* out) {
  constexpr std::string_view kField = "InputParameters";
  od::json_type type;
  if (auto e = v.type().get(type)) return JsonError(kField, e);
  if (type != od::json_type::array) return ValidateValue(v, 1, kField);
  od::array params;
  if (auto e = v.get_array().get(params)) return JsonError(kField, e);
  bool settled = false;  // the extractor's walk ends at or before this point
  for (auto param_result : params) {
    od::value param;
    if (auto e = std::move(param_result).get(param)) return JsonError(kField, e);
    if (auto e = param.type().get(type)) return JsonError(kField, e);
    if (settled || type != od::json_type::object) {
      settled = true;
      if (Status st = ValidateValue(param, 2, kField); !st.ok()) return st;
      continue;
    }
    od::object members;
    if (auto e = param.get_object().get(members)) return JsonError(kField, e);
    bool is_target = false;
    for (auto member_result : members) {
      od::field member;
      if (auto e = std::move(member_result).get(member)) return JsonError(kField, e);
      std::string_view name;
      if (auto e = member.unescaped_key().get(name)) return JsonError(kField, e);
      od::value value = member.value();
      if (!settled && (name == "key" || (name == "value" && is_target))) {
        if (auto e = value.type().get(type)) return JsonError(kField, e);
        if (name == "key" && type == od::json_type::string) {
          std::string_view key;
          if (auto e = value.get_string().get(key)) return JsonError(kField, e);
          is_target = key == "Target";
          continue;
        }
        settled = true;
        if (name == "value" && type == od::json_type::object) {
          const char* start = nullptr;
          const char* end = nullptr;
          if (auto e = value.current_location().get(start)) return JsonError(kField, e);
          if (Status st = ValidateValue(value, 3, kField); !st.ok()) return st;
          // The next token, past the object and any whitespace.
          if (doc.current_location().get(end) != simdjson::SUCCESS) continue;
          while (end > start &&
                 (end[-1] == ' ' || end[-1] == '\n' || end[-1] == '\r' || end[-1] == '\t')) {
            --end;
          }
          if (end - start >= 2 && *start == '{' && end[-1] == '}') {
            out->target_offset = static_cast<uint32_t>(start - base);
            out->target_length = static_cast<uint32_t>(end - start);
          }
          continue;
        }
      }
      if (Status st = ValidateValue(value, 3, kField); !st.ok()) return st;
    }
  }
  return Status::Ok();
}

int DaysFromCivil(int y, unsigned m, unsigned d) {
  // Howard Hinnant's algorithm: days since 1970-01-01 in the proleptic Gregorian calendar.
  y -= m <= 2;
  const int era = (y >= 0 ? y : y - 399) / 400;
  const unsigned yoe = static_cast<unsigned>(y - era * 400);
  const unsigned doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
  const unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return era * 146097 + static_cast<int>(doe) - 719468;
}

bool ParseFixed(std::string_view s, size_t pos, size_t n, int* out) {
  if (pos + n > s.size()) return false;
  // Digits only: from_chars would also take a leading '-' ("T-1:00:00").
  for (size_t i = pos; i < pos + n; ++i) {
    if (s[i] < '0' || s[i] > '9') return false;
  }
  auto r = std::from_chars(s.data() + pos, s.data() + pos + n, *out);
  return r.ec == std::errc() && r.ptr == s.data() + pos + n;
}

Result<int64_t> ParseIsoDate(std::string_view s) {
  // yyyy-mm-ddThh:mm:ss[.fff...][Z|+hh:mm|-hh:mm]
  int y, mo, d, h, mi, sec;
  if (s.size() < 19 || s[4] != '-' || s[7] != '-' || (s[10] != 'T' && s[10] != ' ') ||
      s[13] != ':' || s[16] != ':' || !ParseFixed(s, 0, 4, &y) || !ParseFixed(s, 5, 2, &mo) ||
      !ParseFixed(s, 8, 2, &d) || !ParseFixed(s, 11, 2, &h) || !ParseFixed(s, 14, 2, &mi) ||
      !ParseFixed(s, 17, 2, &sec)) {
    return InvalidArgument("not a date");
  }
  static constexpr int kDaysInMonth[] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  const bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
  if (mo < 1 || mo > 12 || d < 1 || d > kDaysInMonth[mo - 1] || (mo == 2 && d == 29 && !leap) ||
      h > 23 || mi > 59 || sec > 60) {
    return InvalidArgument("date out of range");
  }
  size_t pos = 19;
  int64_t millis = 0;
  if (pos < s.size() && s[pos] == '.') {
    ++pos;
    int digits = 0;
    while (pos < s.size() && s[pos] >= '0' && s[pos] <= '9') {
      if (digits < 3) millis = millis * 10 + (s[pos] - '0');
      ++digits;
      ++pos;
    }
    if (digits == 0) return InvalidArgument("not a date");
    for (int i = digits; i < 3; ++i) millis *= 10;
  }
  int64_t offset_min = 0;
  if (pos < s.size()) {
    if (s[pos] == 'Z' && pos + 1 == s.size()) {
      ++pos;
    } else if ((s[pos] == '+' || s[pos] == '-') && s.size() == pos + 6 && s[pos + 3] == ':') {
      int oh, om;
      if (!ParseFixed(s, pos + 1, 2, &oh) || !ParseFixed(s, pos + 4, 2, &om)) {
        return InvalidArgument("bad offset");
      }
      offset_min = (s[pos] == '-' ? -1 : 1) * (oh * 60 + om);
      pos = s.size();
    } else {
      return InvalidArgument("not a date");
    }
  }
  const int64_t days = DaysFromCivil(y, static_cast<unsigned>(mo), static_cast<unsigned>(d));
  const int64_t secs = days * 86400 + h * 3600 + mi * 60 + sec - offset_min * 60;
  return secs * 1000 + millis;
}

}  // namespace

Result<int64_t> ParseDataverseDate(std::string_view s) {
  // Accept both the unescaped and the raw "\/Date(" form.
  constexpr std::string_view kPrefixes[] = {"/Date(", "\\/Date("};
  constexpr std::string_view kSuffixes[] = {")/", ")\\/"};
  for (int i = 0; i < 2; ++i) {
    if (!s.starts_with(kPrefixes[i])) continue;
    if (!s.ends_with(kSuffixes[i])) return InvalidArgument("unterminated /Date()/");
    std::string_view inner =
        s.substr(kPrefixes[i].size(), s.size() - kPrefixes[i].size() - kSuffixes[i].size());
    int64_t ms = 0;
    auto r = std::from_chars(inner.data(), inner.data() + inner.size(), ms);
    if (r.ec != std::errc() || r.ptr == inner.data()) return InvalidArgument("bad /Date()/ number");
    std::string_view rest(r.ptr, static_cast<size_t>(inner.data() + inner.size() - r.ptr));
    if (!rest.empty()) {
      int off = 0;
      if (rest.size() != 5 || (rest[0] != '+' && rest[0] != '-') || !ParseFixed(rest, 1, 4, &off)) {
        return InvalidArgument("bad /Date()/ offset");
      }
    }
    return ms;
  }
  return ParseIsoDate(s);
}

bool CanonicalGuid(std::string_view in, std::string* out) {
  if (in.size() != 36) return false;
  // No branch per character: a GUID's digits are random, and a branch on digit or letter
  // mispredicted at about a third of them (bench/README.md, "CanonicalGuid"). OR-ing 0x20
  // lowercases A-F and leaves 0-9 and '-' as they are.
  static constexpr unsigned char kHyphen[36] = {0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0,
                                                0, 1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1};
  char lowered[36];
  unsigned char bad = 0;
  for (size_t i = 0; i < 36; ++i) {
    const auto c = static_cast<unsigned char>(in[i]);
    const auto lower = static_cast<unsigned char>(c | 0x20);
    const unsigned char hex =
        static_cast<unsigned char>(static_cast<unsigned char>(c - '0') < 10) |
        static_cast<unsigned char>(static_cast<unsigned char>(lower - 'a') < 6);
    const unsigned char hyphen = c == '-';
    bad |= static_cast<unsigned char>((kHyphen[i] ? hyphen : hex) ^ 1);
    lowered[i] = static_cast<char>(lower);
  }
  if (bad != 0) return false;
  out->assign(lowered, 36);
  return true;
}

void ApplyHttpHeaders(const WebhookHttpHeaders& h, EventHeader* out) {
  out->organization_host.assign(h.organization);
  out->header_entity_name.assign(h.entity_name);
  out->header_request_name.assign(h.request_name);
  out->http_request_id.assign(h.request_id);
  out->correlation_request_id.assign(h.correlation_request_id);
  out->size_exceeded = h.size_exceeded;
}

struct Decoder::Impl {
  explicit Impl(size_t max_bytes) : parser(max_bytes) {}
  od::parser parser;
  std::string padded;  // fallback copy for unpadded input
  size_t copies = 0;

  Status DecodeDocument(simdjson::padded_string_view input, EventHeader* out);
};

Decoder::Decoder(size_t max_body_bytes) : impl_(std::make_unique<Impl>(max_body_bytes)) {}
Decoder::~Decoder() = default;
size_t Decoder::copies() const { return impl_->copies; }

Status Decoder::Decode(const char* data, size_t len, size_t capacity, EventHeader* out) {
  out->Clear();
  if (len == 0) return InvalidArgument("body: empty");
  if (len > impl_->parser.max_capacity())
    return InvalidArgument("body: larger than max_body_bytes");
  if (capacity >= len + simdjson::SIMDJSON_PADDING) {
    return impl_->DecodeDocument(simdjson::padded_string_view(data, len, capacity), out);
  }
  ++impl_->copies;
  impl_->padded.reserve(len + simdjson::SIMDJSON_PADDING);
  impl_->padded.assign(data, len);
  return impl_->DecodeDocument(
      simdjson::padded_string_view(impl_->padded.data(), len, impl_->padded.capacity()), out);
}

namespace {

// The fields the router reads (here, or the attribute extractor: router/decode/attributes.h).
// Each may appear once: with two, a reader taking the first and one taking the last would
// disagree about the event.
constexpr std::string_view kSingleKeys[] = {"MessageName",
                                            "PrimaryEntityName",
                                            "SecondaryEntityName",
                                            "PrimaryEntityId",
                                            "Stage",
                                            "Mode",
                                            "Depth",
                                            "CorrelationId",
                                            "OperationId",
                                            "RequestId",
                                            "InitiatingUserId",
                                            "OrganizationName",
                                            "OperationCreatedOn",
                                            "OwningExtension",
                                            "InputParameters",
                                            "PreEntityImages",
                                            "PostEntityImages"};
static_assert(std::size(kSingleKeys) <= 32);

// False when `key` is one of kSingleKeys and was met before.
bool FirstTime(std::string_view key, uint32_t* seen) {
  for (size_t i = 0; i < std::size(kSingleKeys); ++i) {
    if (key != kSingleKeys[i]) continue;
    const uint32_t bit = 1u << i;
    if (*seen & bit) return false;
    *seen |= bit;
    return true;
  }
  return true;
}

}  // namespace

Status Decoder::Impl::DecodeDocument(simdjson::padded_string_view input, EventHeader* out) {
  od::document doc;
  if (auto e = parser.iterate(input).get(doc)) return JsonError("body", e);
  od::object root;
  if (auto e = doc.get_object().get(root)) return JsonError("body", e);

  bool have_message = false, have_entity = false, have_id = false, have_stage = false,
       have_mode = false, have_extension = false;
  Status st;
  uint32_t seen = 0;  // bit i: kSingleKeys[i] met
  // Iterate the fields in document order: On-Demand then skips everything else in one pass.
  for (auto field_result : root) {
    od::field field;
    if (auto e = std::move(field_result).get(field)) return JsonError("body", e);
    std::string_view key;
    if (auto e = field.unescaped_key().get(key)) return JsonError("body", e);
    if (!FirstTime(key, &seen)) return FieldError(key, "appears twice");
    od::value v = field.value();
    if (key == "MessageName") {
      st = ReadString(v, key, &out->message_name);
      have_message = st.ok() && !out->message_name.empty();
    } else if (key == "PrimaryEntityName") {
      st = ReadLogicalName(v, key, &out->primary_entity_name);
      have_entity = st.ok();
    } else if (key == "SecondaryEntityName") {
      st = CheckSecondaryEntityName(v, key);
    } else if (key == "PrimaryEntityId") {
      st = ReadGuid(v, key, &out->primary_entity_id);
      have_id = st.ok() && !out->primary_entity_id.empty();
    } else if (key == "Stage") {
      st = ReadInt32(v, key, &out->stage);
      have_stage = st.ok();
    } else if (key == "Mode") {
      st = ReadInt32(v, key, &out->mode);
      have_mode = st.ok();
    } else if (key == "Depth") {
      st = ReadInt32(v, key, &out->depth);
    } else if (key == "CorrelationId") {
      st = ReadGuid(v, key, &out->correlation_id);
    } else if (key == "OperationId") {
      st = ReadGuid(v, key, &out->operation_id);
    } else if (key == "RequestId") {
      st = ReadGuid(v, key, &out->request_id);
    } else if (key == "InitiatingUserId") {
      st = ReadGuid(v, key, &out->initiating_user_id);
    } else if (key == "OrganizationName") {
      st = ReadString(v, key, &out->organization_name);
    } else if (key == "OperationCreatedOn") {
      std::string_view s;
      if (auto e = v.get_string().get(s)) return JsonError(key, e);
      Result<int64_t> ms = ParseDataverseDate(s);
      if (!ms.ok()) return FieldError(key, ms.status().message());
      out->operation_created_on_ms = *ms;
    } else if (key == "OwningExtension") {
      od::object ext;
      if (auto e = v.get_object().get(ext)) return JsonError("OwningExtension", e);
      bool have_id_field = false;
      for (auto ext_field_result : ext) {
        od::field ext_field;
        if (auto e = std::move(ext_field_result).get(ext_field))
          return JsonError("OwningExtension", e);
        std::string_view ext_key;
        if (auto e = ext_field.unescaped_key().get(ext_key)) return JsonError("OwningExtension", e);
        if (ext_key == "Id") {
          if (have_id_field) return FieldError("OwningExtension.Id", "appears twice");
          have_id_field = true;
          st = ReadGuid(ext_field.value(), "OwningExtension.Id", &out->owning_extension_id);
          if (!st.ok()) return st;
          have_extension = !out->owning_extension_id.empty();
        } else if (st = ValidateValue(ext_field.value(), 2, "OwningExtension"); !st.ok()) {
          return st;
        }
      }
    } else if (key == "InputParameters") {
      st = ReadInputParameters(v, input.data(), doc, out);
    } else {
      st = ValidateValue(v, 1, key);
    }
    if (!st.ok()) return st;
  }
  // In bounds after the root object means more tokens follow it.
  const char* trailing = nullptr;
  if (doc.current_location().get(trailing) == simdjson::SUCCESS) {
    return FieldError("body", "trailing content after the JSON object");
  }

  if (!have_message) return FieldError("MessageName", "missing");
  if (!have_entity) return FieldError("PrimaryEntityName", "missing");
  if (!have_id) return FieldError("PrimaryEntityId", "missing");
  if (!have_stage) return FieldError("Stage", "missing");
  if (!have_mode) return FieldError("Mode", "missing");
  if (!have_extension) return FieldError("OwningExtension.Id", "missing");
  if (out->operation_id.empty() && out->request_id.empty()) {
    return FieldError("OperationId", "missing, and RequestId is null");
  }
  return Status::Ok();
}

}  // namespace dvrouter
