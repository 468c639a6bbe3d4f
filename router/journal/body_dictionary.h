// Compression dictionaries for journal bodies (docs/architecture.md, "Compression
// dictionaries"): the newest bodies of the kinds of event the journal sees, concatenated, after
// the entropy tables zstd computes from older ones (none until there are older ones: raw
// content). A body compressed with one names it by id; the file journal keeps each in a file
// <id>.dict beside its segments for as long as a segment holds a body that names it.
//
// BodyDictionary: immutable once made, any thread. DictionarySet: any thread (its own lock).
// DictionarySampler: the journal writer's thread only. The file functions are pure.
#pragma once

#include <cstddef>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "router/common/status.h"

struct ZSTD_CDict_s;
struct ZSTD_DDict_s;

namespace dvrouter {

class BodyDictionary {
 public:
  // `content` as a dictionary file holds it (DictionaryContent): a zstd dictionary when it opens
  // with zstd's dictionary magic, raw content otherwise. Null when zstd cannot digest it (no
  // memory, or a zstd dictionary that does not parse). With `compress`, bodies can be compressed
  // with it at `level`; every dictionary can decompress.
  static std::shared_ptr<const BodyDictionary> Make(uint64_t id, std::string content, int level,
                                                    bool compress = true);
  ~BodyDictionary();
  BodyDictionary(const BodyDictionary&) = delete;
  BodyDictionary& operator=(const BodyDictionary&) = delete;

  uint64_t id() const { return id_; }
  // The low 32 bits of XXH3-64 of the content: a frame carries it with the id, so a dictionary
  // file that is not the one the body was compressed with is refused, never used.
  uint32_t check() const { return check_; }
  const std::string& content() const { return content_; }
  const ZSTD_CDict_s* cdict() const { return cdict_; }
  const ZSTD_DDict_s* ddict() const { return ddict_; }

 private:
  BodyDictionary() = default;
  uint64_t id_ = 0;
  uint32_t check_ = 0;
  std::string content_;
  ZSTD_CDict_s* cdict_ = nullptr;
  ZSTD_DDict_s* ddict_ = nullptr;
};

// What a dictionary is made of: the sampled bodies it holds, and older samples of the same kinds
// from which zstd computes its entropy tables.
struct DictionaryMaterial {
  std::string content;  // the newest sample of each kind chosen, the most frequent last
  std::string samples;  // older samples, concatenated
  std::vector<size_t> sample_sizes;
};

// What a dictionary file made of `m` holds: a zstd dictionary (the content after entropy tables
// zstd computed from the samples for `level`, so a body's literals and sequences are coded with
// ready tables), or the raw content when zstd cannot compute them (no older samples yet). Raw
// content never opens with zstd's dictionary magic (a space is put before it). Any thread; the
// journal calls it on its dictionary thread (docs/architecture.md, "Compression dictionaries").
std::string DictionaryContent(const DictionaryMaterial& m, int level);
// Whether `content` is a zstd dictionary (with entropy tables) rather than raw content.
bool IsZstdDictionary(std::string_view content);

// A dictionary file: "DVDICT1\n", u64 id, u32 content length, u64 XXH3-64 of the content, the
// content (little-endian).
std::string DictionaryFileText(uint64_t id, std::string_view content);
// The content of a dictionary file that must hold dictionary `id`; InvalidArgument saying what is
// wrong otherwise (not a dictionary file, another id, a length or checksum that does not match).
Result<std::string> ParseDictionaryFile(std::string_view bytes, uint64_t id);
// "<id, 20 digits>.dict".
std::string DictionaryFileName(uint64_t id);

// The dictionaries a journal holds, by id, and the one new bodies are compressed with. The active
// one has a lock of its own: the ingress threads ask for it on every append, delivery workers
// look dictionaries up by id, and no lock is shared between the two (docs/architecture.md).
class DictionarySet {
 public:
  void Add(std::shared_ptr<const BodyDictionary> dict, bool make_active);
  void Remove(uint64_t id);
  // Null when the set has no dictionary by that id.
  std::shared_ptr<const BodyDictionary> Find(uint64_t id) const;
  // Null when there is none yet.
  std::shared_ptr<const BodyDictionary> Active() const;
  std::vector<uint64_t> Ids() const;
  size_t size() const;

 private:
  mutable std::mutex mu_;
  std::map<uint64_t, std::shared_ptr<const BodyDictionary>> by_id_;
  mutable std::mutex active_mu_;
  std::shared_ptr<const BodyDictionary> active_;
};

// What the next dictionary holds and when one is worth making: the newest body of each kind
// (table and message) of event appended, and whether kinds the last dictionary lacks have
// appeared since.
class DictionarySampler {
 public:
  struct Options {
    size_t max_bytes = 112u << 10;        // a dictionary's size at most
    size_t max_sample_bytes = 32u << 10;  // of one kind's body
    size_t max_kinds = 32;                // kinds tracked; later ones are not sampled
    uint64_t resample_every = 64;         // a kind's sample is replaced every this many events
    uint64_t kind_min_events = 16;        // a kind counts once it has had this many events
    uint64_t min_events_between = 2000;   // events between two dictionaries at least
    uint64_t refresh_events = 1'000'000;  // a dictionary this many events old is replaced
  };
  DictionarySampler() : DictionarySampler(Options{}) {}
  explicit DictionarySampler(Options options) : opt_(options) {}

  void Observe(std::string_view table, std::string_view message, std::string_view body);
  // Whether a dictionary made now would hold kinds the last one lacked, or the last is old.
  bool Due() const;
  // The next dictionary's material (the samples of the most frequent kinds, the most frequent
  // last, since zstd reaches the end of a dictionary cheapest, and their older samples), and the
  // kinds it considered are counted as covered from now on.
  DictionaryMaterial Take();

 private:
  static constexpr size_t kOlderSamples = 3;  // kept per kind for the entropy tables
  struct Kind {
    uint64_t events = 0;
    std::string sample;
    std::deque<std::string> older;  // the samples it replaced, newest first
    bool covered = false;
  };
  Options opt_;
  std::map<std::string, Kind, std::less<>> kinds_;
  std::string key_;  // the lookup's, reused
  uint64_t events_since_take_ = 0;
  bool uncovered_ready_ = false;  // a counting kind is not covered
  bool taken_ = false;
};

}  // namespace dvrouter
