#include "router/journal/body_dictionary.h"

#include <xxhash.h>
#include <zdict.h>
#include <zstd.h>

#include <algorithm>
#include <cstdio>
#include <cstring>

namespace dvrouter {

namespace {

constexpr std::string_view kMagic = "DVDICT1\n";
constexpr size_t kHeaderBytes = 8 + 8 + 4 + 8;
// zstd reads a dictionary that opens with these bytes as a trained one, not as raw content.
constexpr char kZstdDictMagic[4] = {'\x37', '\xA4', '\x30', '\xEC'};
// The least content zstd makes a dictionary of (ZDICT_CONTENTSIZE_MIN).
constexpr size_t kMinZstdContent = 128;

template <typename T>
void Put(std::string* out, T v) {
  char buf[sizeof(T)];
  std::memcpy(buf, &v, sizeof(T));
  out->append(buf, sizeof(T));
}

}  // namespace

std::shared_ptr<const BodyDictionary> BodyDictionary::Make(uint64_t id, std::string content,
                                                           int level, bool compress) {
  std::shared_ptr<BodyDictionary> d(new BodyDictionary);
  d->id_ = id;
  d->content_ = std::move(content);
  d->check_ = static_cast<uint32_t>(XXH3_64bits(d->content_.data(), d->content_.size()));
  if (compress) {
    d->cdict_ = ZSTD_createCDict(d->content_.data(), d->content_.size(), level);
    if (d->cdict_ == nullptr) return nullptr;
  }
  d->ddict_ = ZSTD_createDDict(d->content_.data(), d->content_.size());
  if (d->ddict_ == nullptr) return nullptr;
  return d;
}

BodyDictionary::~BodyDictionary() {
  ZSTD_freeCDict(cdict_);
  ZSTD_freeDDict(ddict_);
}

bool IsZstdDictionary(std::string_view content) {
  return content.size() >= 4 && std::memcmp(content.data(), kZstdDictMagic, 4) == 0;
}

std::string DictionaryContent(const DictionaryMaterial& m, int level) {
  if (!m.sample_sizes.empty() && m.content.size() >= kMinZstdContent) {
    std::string dict(m.content.size() + (16u << 10), '\0');  // room for the tables
    ZDICT_params_t params{};
    params.compressionLevel = level;
    // zstd's frames do not carry it (the journal's frames name the dictionary); zstd reserves
    // the IDs below 32768.
    params.dictID = 32768;
    const size_t n = ZDICT_finalizeDictionary(
        dict.data(), dict.size(), m.content.data(), m.content.size(), m.samples.data(),
        m.sample_sizes.data(), static_cast<unsigned>(m.sample_sizes.size()), params);
    if (!ZDICT_isError(n) && n >= m.content.size()) {
      dict.resize(n);
      return dict;
    }
  }
  std::string raw = m.content;
  if (IsZstdDictionary(raw)) raw.insert(raw.begin(), ' ');  // raw, whatever its first bytes
  return raw;
}

std::string DictionaryFileText(uint64_t id, std::string_view content) {
  std::string out(kMagic);
  Put<uint64_t>(&out, id);
  Put<uint32_t>(&out, static_cast<uint32_t>(content.size()));
  Put<uint64_t>(&out, XXH3_64bits(content.data(), content.size()));
  out.append(content);
  return out;
}

Result<std::string> ParseDictionaryFile(std::string_view bytes, uint64_t id) {
  if (bytes.size() < kHeaderBytes || bytes.substr(0, kMagic.size()) != kMagic) {
    return InvalidArgument("not a dvrouter dictionary file");
  }
  uint64_t file_id = 0, checksum = 0;
  uint32_t length = 0;
  std::memcpy(&file_id, bytes.data() + 8, 8);
  std::memcpy(&length, bytes.data() + 16, 4);
  std::memcpy(&checksum, bytes.data() + 20, 8);
  if (file_id != id) {
    return InvalidArgument("holds dictionary " + std::to_string(file_id) + ", not " +
                           std::to_string(id));
  }
  if (bytes.size() - kHeaderBytes != length) {
    return InvalidArgument("content length " + std::to_string(bytes.size() - kHeaderBytes) +
                           " differs from the " + std::to_string(length) + " it names");
  }
  const std::string_view content = bytes.substr(kHeaderBytes);
  if (XXH3_64bits(content.data(), content.size()) != checksum) {
    return InvalidArgument("content checksum mismatch");
  }
  return std::string(content);
}

std::string DictionaryFileName(uint64_t id) {
  char name[32];
  std::snprintf(name, sizeof(name), "%020llu.dict", static_cast<unsigned long long>(id));
  return name;
}

void DictionarySet::Add(std::shared_ptr<const BodyDictionary> dict, bool make_active) {
  if (make_active) {
    std::lock_guard<std::mutex> lock(active_mu_);
    active_ = dict;
  }
  std::lock_guard<std::mutex> lock(mu_);
  const uint64_t id = dict->id();
  by_id_[id] = std::move(dict);
}

void DictionarySet::Remove(uint64_t id) {
  {
    std::lock_guard<std::mutex> lock(active_mu_);
    if (active_ && active_->id() == id) active_.reset();
  }
  std::lock_guard<std::mutex> lock(mu_);
  by_id_.erase(id);
}

std::shared_ptr<const BodyDictionary> DictionarySet::Find(uint64_t id) const {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = by_id_.find(id);
  return it == by_id_.end() ? nullptr : it->second;
}

std::shared_ptr<const BodyDictionary> DictionarySet::Active() const {
  std::lock_guard<std::mutex> lock(active_mu_);
  return active_;
}

std::vector<uint64_t> DictionarySet::Ids() const {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<uint64_t> ids;
  for (const auto& [id, dict] : by_id_) ids.push_back(id);
  return ids;
}

size_t DictionarySet::size() const {
  std::lock_guard<std::mutex> lock(mu_);
  return by_id_.size();
}

void DictionarySampler::Observe(std::string_view table, std::string_view message,
                                std::string_view body) {
  ++events_since_take_;
  key_.assign(table).push_back('\n');
  key_.append(message);
  auto it = kinds_.find(key_);
  if (it == kinds_.end()) {
    if (kinds_.size() >= opt_.max_kinds) return;
    it = kinds_.emplace(key_, Kind{}).first;
  }
  Kind& k = it->second;
  if (k.events++ % opt_.resample_every == 0) {
    if (!k.sample.empty()) {
      if (k.older.size() == kOlderSamples) k.older.pop_back();
      k.older.push_front(std::move(k.sample));
      k.sample.clear();
    }
    k.sample.assign(body.substr(0, opt_.max_sample_bytes));
  }
  if (!k.covered && k.events >= opt_.kind_min_events) uncovered_ready_ = true;
}

bool DictionarySampler::Due() const {
  if (events_since_take_ < opt_.min_events_between) return false;
  return uncovered_ready_ || (taken_ && events_since_take_ >= opt_.refresh_events);
}

DictionaryMaterial DictionarySampler::Take() {
  std::vector<Kind*> ready;
  for (auto& [key, k] : kinds_) {
    if (k.events >= opt_.kind_min_events && !k.sample.empty()) ready.push_back(&k);
  }
  // The most frequent kinds go in first when the room runs out, and last in the content.
  std::sort(ready.begin(), ready.end(),
            [](const Kind* a, const Kind* b) { return a->events > b->events; });
  std::vector<const Kind*> chosen;
  size_t bytes = 0;
  for (Kind* k : ready) {
    k->covered = true;
    if (bytes + k->sample.size() > opt_.max_bytes) continue;
    bytes += k->sample.size();
    chosen.push_back(k);
  }
  DictionaryMaterial m;
  m.content.reserve(bytes);
  for (auto it = chosen.rbegin(); it != chosen.rend(); ++it) {
    m.content.append((*it)->sample);
    for (const std::string& older : (*it)->older) {
      m.samples.append(older);
      m.sample_sizes.push_back(older.size());
    }
  }
  events_since_take_ = 0;
  uncovered_ready_ = false;
  taken_ = true;
  return m;
}

}  // namespace dvrouter
