// The webhook decoder and the attribute extractor on any bytes: the same verdict with and
// without simdjson's padding, and what they accept is what the rest of the router relies on
// (a table that is a logical name, a lowercase GUID row id, a Target that is valid JSON, a
// Target's place that converts as the whole body does).
#include <simdjson.h>

#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "router/decode/attributes.h"
#include "router/decode/decode.h"
#include "router/decode/event.h"
#include "tests/fuzz/fuzz_util.h"

using dvrouter::fuzz::Check;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static dvrouter::Decoder decoder(1 << 20);
  const char* text = reinterpret_cast<const char*>(data);
  // Unpadded (the decoder copies) and padded (it parses in place).
  dvrouter::EventHeader exact, padded;
  const dvrouter::Status a = decoder.Decode(text, size, size, &exact);
  std::vector<char> buffer(size + dvrouter::Decoder::kPadding);
  if (size != 0) std::memcpy(buffer.data(), data, size);
  const dvrouter::Status b = decoder.Decode(buffer.data(), size, buffer.size(), &padded);
  Check(a.ok() == b.ok(), "padding changes the verdict");
  Check(a.message() == b.message(), "padding changes the error");
  if (!a.ok()) return 0;
  Check(exact.message_name == padded.message_name &&
            exact.primary_entity_id == padded.primary_entity_id &&
            exact.primary_entity_name == padded.primary_entity_name,
        "padding changes the header");
  Check(dvrouter::IsLogicalName(exact.primary_entity_name) || exact.primary_entity_name == "none",
        "an accepted table is not a logical name");
  Check(dvrouter::IsGuid(exact.primary_entity_id), "an accepted row id is not a GUID");
  for (char c : exact.primary_entity_id) Check(!(c >= 'A' && c <= 'Z'), "row id not lowercase");

  Check(exact.target_offset == padded.target_offset && exact.target_length == padded.target_length,
        "padding changes the Target's place");

  dvrouter::ChangeSet scratch;
  const dvrouter::ChangeSet* changes = nullptr;
  const std::string_view body(text, size);
  const dvrouter::Status whole = dvrouter::ExtractChanges(body, nullptr, &scratch, &changes);
  // The Target's place the decoder noted converts to what the whole body converts to.
  if (exact.target_length != 0) {
    Check(size_t{exact.target_offset} + exact.target_length <= size,
          "the Target's place lies past the body");
    dvrouter::ChangeSet part;
    const dvrouter::Status alone = dvrouter::ThreadAttributeExtractor().ExtractTarget(
        text + exact.target_offset, exact.target_length, size - exact.target_offset, &part);
    // A Target the converter refuses (an attribute without a value...) is refused alike.
    Check(alone.ok() == whole.ok() && alone.message() == whole.message(),
          "the Target alone converts with another verdict than the whole body");
    Check(part.has_target == changes->has_target && part.is_reference == changes->is_reference &&
              part.entity == changes->entity && part.id == changes->id &&
              part.attributes == changes->attributes && part.columns == changes->columns,
          "the Target alone converts otherwise than the whole body");
  }
  if (whole.ok() && changes->has_target) {
    simdjson::dom::parser parser;
    simdjson::dom::element doc;
    const auto error = parser.parse(changes->attributes).get(doc);
    // Integers beyond 64 bits are valid JSON that simdjson's DOM refuses: copied as sent.
    Check(error == simdjson::SUCCESS || (error == simdjson::NUMBER_ERROR &&
                                         dvrouter::fuzz::HasHugeInteger(changes->attributes)),
          "converted attributes are not JSON");
    Check(error != simdjson::SUCCESS || doc.is_object(), "converted attributes are not an object");
  }
  return 0;
}
