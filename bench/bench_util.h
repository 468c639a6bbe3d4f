// Shared by the micro-benchmarks: fixture bodies, loaded once. Single-threaded use.
#pragma once

#include <fstream>
#include <sstream>
#include <string>

namespace dvrouter::bench {

inline std::string LoadFixture(const std::string& name) {
  std::ifstream in(std::string(DVROUTER_FIXTURES_DIR) + "/" + name, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

inline const char* const kFixtures[] = {
    "create-msdyn_agentstatus-postop-sync.json",
    "customaction-context-devkit-isodates.json",
    "update-contact-postop-async.json",
    "update-msdyn_agentstatus-postop-async.json",
};

}  // namespace dvrouter::bench
