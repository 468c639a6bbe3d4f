#include "adapters/erp/callback_token.h"

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <cstdlib>

namespace dvrouter {

std::string HmacSha256Hex(std::string_view key, std::string_view data) {
  unsigned char mac[EVP_MAX_MD_SIZE];
  unsigned int mac_len = 0;
  if (HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()),
           reinterpret_cast<const unsigned char*>(data.data()), data.size(), mac,
           &mac_len) == nullptr) {
    std::abort();  // only on allocation failure inside OpenSSL
  }
  static constexpr char kHex[] = "0123456789abcdef";
  std::string hex;
  hex.reserve(2 * mac_len);
  for (unsigned int i = 0; i < mac_len; ++i) {
    hex.push_back(kHex[mac[i] >> 4]);
    hex.push_back(kHex[mac[i] & 0xf]);
  }
  return hex;
}

std::string CallbackToken(std::string_view secret, std::string_view adapter,
                          std::string_view event_id) {
  std::string data;
  data.reserve(adapter.size() + 1 + event_id.size());
  data.append(adapter).push_back('/');
  data.append(event_id);
  return HmacSha256Hex(secret, data);
}

}  // namespace dvrouter
